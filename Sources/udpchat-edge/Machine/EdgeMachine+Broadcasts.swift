import ChatLog
import ChatWire
import Foundation
import IPCMessages

extension EdgeMachine {
    // MARK: - Events the store published (docs/protocol.md §6)

    /// An event from the store's stream.
    mutating func published(_ event: IPCEvent, _ now: EdgeTime, _ out: inout EdgeOutput) {
        var actions: [DeliveryEngine.Output] = []
        switch event.kind {
        case .mark(let mark)?:
            streamMark(mark, now, &out)
            return
        case nil:
            return
        default:
            noteEventId(event, now, &out)
        }
        switch event.kind {
        case .room(let room):
            delivery.roomEvent(Self.entry(room), roomId: room.roomID, recipients: room.recipientUserIds, now: now.monotonic, &actions)
        case .user(let user):
            let packet: ServerPacket
            switch user.body {
            case .roomJoined(let room)?: packet = .roomJoined(roomId: room.roomID, roomName: room.name)
            case .roomLeft(let room)?: packet = .roomLeft(roomId: room.roomID, roomName: room.name)
            case nil: return
            }
            let targets = delivery.sessions(ofUser: user.userID).filter { table[$0]?.id != user.exceptSessionID }
            if case .roomLeft(let room)? = user.body {
                for index in targets { delivery.unfollow(index, roomId: room.roomID) }
            }
            guard let template = Self.template(packet) else { return }
            delivery.notice(template, to: Array(targets), now: now.monotonic, &actions)
        case .roomList(let list):
            // Cut to what fits in a datagram with the copy's msg_id added.
            let full = ServerPacket.roomList(list.rooms.map(RoomSummary.init))
            let packet = full.trimmed { WireSpec.fitsSealed($0.count + CopyTemplate.copyOverhead) } ?? full
            guard let template = Self.template(packet) else { return }
            delivery.roomList(template, now: now.monotonic, &actions)
        case .sessionMoved(let moved):
            // Another edge heard the session last and delivers to it now;
            // its cursors are in the store. One with a request under way here
            // is let go at the next sweep, unless it speaks here again.
            guard moved.edge != settings.edgeId, let index = table.index(of: moved.sessionID) else { return }
            if table[index]?.busy == true {
                table.update(index) { $0.movedAway = true }
            } else {
                forget(index)
            }
            return
        case .sessionNotice(let notice):
            // A late error (an AI job that failed): sent like a broadcast, so
            // it is retransmitted until acknowledged.
            guard let index = table.index(of: notice.sessionID), let template = Self.template(.error(message: notice.error)) else {
                return
            }
            delivery.notice(template, to: [index], now: now.monotonic, &actions)
        case .mark?, nil:
            return
        }
        perform(actions, now, &out)
    }

    /// A broadcast's template, or nil when a copy would not fit in a datagram.
    private static func template(_ packet: ServerPacket) -> CopyTemplate? {
        let template = CopyTemplate(packet)
        guard WireSpec.fitsSealed(template.size + CopyTemplate.copyOverhead) else { return nil }
        return template
    }

    /// A room event as the log keeps it. One that is unknown to this edge,
    /// or too large for a datagram, is kept as a gap filler that is sent to
    /// nobody: it still moves the cursors along.
    static func entry(_ event: IPCRoomEvent) -> RoomLog.Entry {
        let packet: ServerPacket
        let subject: RoomLog.Subject
        switch event.body {
        case .message(let message)?:
            packet = .message(MessageEvent(message))
            subject = .none
        case .memberJoined(let joined)?:
            packet = .memberJoined(roomId: event.roomID, member: MemberItem(joined.member))
            subject = .joined(userId: joined.member.userID)
        case .memberLeft(let left)?:
            packet = .memberLeft(roomId: event.roomID, memberId: left.memberID)
            subject = .left(userId: left.memberID)
        case nil:
            return RoomLog.Entry(seq: event.seq, subject: .unsendable, template: CopyTemplate(.error(message: "")))
        }
        guard let template = template(packet) else {
            return RoomLog.Entry(seq: event.seq, subject: .unsendable, template: CopyTemplate(.error(message: "")))
        }
        return RoomLog.Entry(seq: event.seq, subject: subject, template: template)
    }

    /// Events are numbered by the store one by one: a number skipped means
    /// an event this edge never received (ZeroMQ drops what is published
    /// while a subscriber reconnects).
    private mutating func noteEventId(_ event: IPCEvent, _ now: EdgeTime, _ out: inout EdgeOutput) {
        let id = event.eventID
        // A stream seen only through its events so far: its first mark says
        // whether anything came before.
        guard let last = streams[event.run]?.lastEventId else { return }
        streams[event.run]!.lastEventId = id
        guard id != last + 1 else { return }
        if id < last {
            logger.info("a store's events start again: it restarted; reading what was missed", metadata: .fields(.run(event.run), .value("id", "\(id)")))
        } else {
            logger.info("events missed: reading them from the store", metadata: .fields(.run(event.run), .value("from", "\(last + 1)"), .value("to", "\(id - 1)")))
        }
        resynchronise(now, &out)
    }

    /// A store's mark: a new run (a store started or restarted, or this edge
    /// just subscribed) or a last event this edge never received means
    /// events were missed. Each store publishes a stream of its own.
    private mutating func streamMark(_ mark: IPCStreamMark, _ now: EdgeTime, _ out: inout EdgeOutput) {
        guard let known = streams[mark.run] else {
            if !streams.isEmpty { logger.info("a store started: reading what was missed", metadata: .fields(.run(mark.run))) }
            streams[mark.run] = EventStreamState(lastEventId: mark.lastEventID, lastMark: now.monotonic)
            resynchronise(now, &out)
            return
        }
        streams[mark.run]!.lastMark = now.monotonic
        if mark.lastEventID > known.lastEventId {
            logger.info(
                "events missed: reading them", metadata: .fields(.run(mark.run), .value("received", "\(known.lastEventId)"), .value("published", "\(mark.lastEventID)")))
            streams[mark.run]!.lastEventId = mark.lastEventID
            resynchronise(now, &out)
        }
    }

    /// Forgets the streams of stores that stopped publishing marks.
    mutating func forgetSilentStreams(_ now: EdgeTime) {
        let cutoff = Self.before(now.monotonic, Self.streamSilence)
        streams = streams.filter { $0.value.lastMark >= cutoff }
    }

    // MARK: - Carrying out the delivery engine's decisions

    /// Seals and sends each copy to its session's current address (a client
    /// that moved still gets its retries), reads rooms from the store, and
    /// counts.
    mutating func perform(_ actions: [DeliveryEngine.Output], _ now: EdgeTime, _ out: inout EdgeOutput) {
        for action in actions {
            switch action {
            case .send(let index, let msgId, let template, let retransmission):
                guard let session = table[index] else { continue }
                if retransmission { metrics.retransmissions.increment() }
                let inner = template.copy(msgId: msgId)
                guard let datagram = Self.seal(inner, sessionId: session.id, cipher: session.cipher, nonces: &nonces) else { continue }
                write(datagram, to: session.address, &out)
            case .read(let roomId, let after):
                let request = IPCStoreRequest.readRoomEvents(roomId: roomId, after: after, limit: RoomLog.pageSize)
                out.storeCalls.append((request, .read(roomId: roomId, after: after)))
            case .acknowledged(let roundTrip):
                metrics.ackRoundTrip.recordNanoseconds(Int64(roundTrip))
            case .unreachable(let index):
                metrics.unreachable.increment()
                logger.info(
                    "session unreachable: broadcasts stop until it speaks", metadata: .fields(.session(table[index]?.id ?? "?")))
            case .skipped(let index, let roomId, let count):
                metrics.backlogSkipped.increment(by: Int64(count))
                logger.info(
                    "session too far behind: skipped the oldest events of a room",
                    metadata: .fields(.session(table[index]?.id ?? "?"), .room(roomId), .count(Int(count))))
            }
        }
    }

    /// udpchat-store answered a read of a room's events.
    mutating func roomEventsRead(
        roomId: String, after: UInt64, _ result: Result<IPCStoreResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput
    ) {
        guard case .success(let response) = result, case .roomEvents(let pages)? = response.result,
            let page = pages.pages.first(where: { $0.roomID == roomId })
        else {
            if case .failure(let error) = result { logger.warning("reading a room's events failed", metadata: .fields(.room(roomId), .peer("udpchat-store"), .error(error))) }
            delivery.readFailed(roomId: roomId, after: after, now: now.monotonic)
            return
        }
        metrics.eventsRead.increment(by: Int64(page.events.count))
        let entries = page.events.map(Self.entry)
        var actions: [DeliveryEngine.Output] = []
        delivery.eventsRead(
            roomId: roomId, after: after, head: page.headSeq, closed: page.closed, entries: entries, now: now.monotonic, &actions)
        perform(actions, now, &out)
    }
}

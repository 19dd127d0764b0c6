import ChatWire
import Foundation
import IPCMessages
import Logging
import Ops
import Testing

@testable import udpchat_edge

extension EdgeMachineTests {
    /// A machine on virtual time and what it asked for.
    struct Harness {
        var machine: EdgeMachine
        var time = EdgeTime(monotonic: 5_000_000_000, wall: 1_800_000_000)
        var out = EdgeOutput()

        init(_ settings: [String: String] = [:]) throws {
            let reader = try SettingsReader.load(environment: ["UDPCHAT_ENV_FILE": "/dev/null"].merging(settings) { $1 })
            machine = EdgeMachine(settings: try EdgeSettings(reader), logger: Logger(label: "test"))
        }

        mutating func advance(milliseconds: UInt64) {
            time.monotonic += milliseconds * 1_000_000
            time.wall += Int64(milliseconds / 1000)
            machine.tick(time, &out)
        }

        /// One datagram read alone, as the rim reads it: then what the
        /// machine queued of it (a handshake, mostly).
        mutating func receive(_ datagram: [UInt8], from address: PeerAddress = EdgeMachineTests.clientAddress) {
            machine.receive(datagram, from: address, time, &out)
            _ = machine.readQueued(budget: .max, time, &out)
        }

        /// udpchat-keys answers `call`, and the machine does what it queued.
        mutating func answerKeys(_ call: KeysCall, _ result: Result<IPCKeysResponse, RPCError>) {
            machine.keysAnswered(call, result, time, &out)
            _ = machine.readQueued(budget: .max, time, &out)
        }

        /// The store calls made so far, taken.
        mutating func takeStoreCalls() -> [(request: IPCStoreRequest, call: StoreCall)] {
            defer { out.storeCalls.removeAll() }
            return out.storeCalls
        }

        mutating func takeKeysCalls() -> [(request: IPCKeysRequest, call: KeysCall)] {
            defer { out.keysCalls.removeAll() }
            return out.keysCalls
        }

        mutating func takeDatagrams() -> [OutboundDatagram] {
            defer { out.datagrams.removeAll() }
            return out.datagrams
        }

        mutating func publish(id: UInt64 = 0, run: String = "run-a", _ kind: (inout IPCEvent) -> Void) {
            var event = IPCEvent()
            event.eventID = id
            event.run = run
            kind(&event)
            machine.published(event, time, &out)
        }

        mutating func mark(_ run: String, _ last: UInt64) {
            publish(run: run) {
                var mark = IPCStreamMark()
                mark.run = run
                mark.lastEventID = last
                $0.mark = mark
            }
        }

        /// The first client request the machine asked the store to carry out, taken.
        mutating func nextRequest() throws -> (request: IPCStoreRequest, call: StoreCall) {
            try #require(takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        }

        /// The store confirms a message `call` posted, as message `id`.
        mutating func confirmSent(_ call: StoreCall, id: Int64, content: String) {
            answerStore(call) { response in
                response.messageSent.messageID = id
                response.messageSent.roomID = EdgeMachineTests.room
                response.messageSent.content = content
            }
        }

        /// A machine serving `client` (loaded with no backlog), its start-up datagrams taken.
        static func serving(_ client: Client, _ settings: [String: String] = [:]) throws -> Harness {
            var h = try Harness(settings)
            try h.start(with: [(EdgeMachineTests.loaded(client, cursor: 0), client.cipher)], events: [])
            _ = h.takeDatagrams()
            return h
        }

        mutating func answerStore(_ call: StoreCall, _ fill: (inout IPCStoreResponse) -> Void) {
            var response = IPCStoreResponse()
            fill(&response)
            machine.storeAnswered(call, .success(response), time, &out)
        }

        /// Starts the machine and answers its load with `sessions` (each with
        /// its key), and the reads of their rooms with `events` (head: the last).
        mutating func start(with sessions: [(IPCLoadedSession, SessionCipher)], events: [IPCRoomEvent]) throws {
            machine.start(time, &out)
            let load = try #require(takeStoreCalls().first { if case .loadPage = $0.call { true } else { false } })
            answerStore(load.call) { response in
                response.loadedSessions.sessions = sessions.map(\.0)
                response.loadedSessions.more = false
            }
            let unwrap = try #require(takeKeysCalls().first)
            var keys = IPCKeysResponse()
            keys.unwrappedKeys.sessionKeys = sessions.map { Data($0.1.keyBytes) }
            machine.keysAnswered(unwrap.call, .success(keys), time, &out)
            answerReads(events)
        }

        /// Answers every read of room events with `events` after the position asked.
        mutating func answerReads(_ events: [IPCRoomEvent]) {
            for call in takeStoreCalls() {
                guard case .read(let roomId, let after) = call.call else { continue }
                answerStore(call.call) { response in
                    var page = IPCRoomEventPage()
                    page.roomID = roomId
                    page.headSeq = events.map(\.seq).max() ?? 0
                    page.events = events.filter { $0.seq > after }
                    response.roomEvents.pages = [page]
                }
            }
        }
    }
}

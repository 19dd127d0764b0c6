import ChatWire
import Foundation
import IPCMessages
import SwiftProtobuf

/// How AI requests are shaped and bounded (the README lists the settings).
struct AIPolicy: Sendable {
    /// Most messages of context a job carries (docs/protocol.md §8.2: 100).
    var contextMessages = WireSpec.historyLimit
    /// Most bytes of context text; the oldest messages go first.
    var contextBytes = 16_384
    /// How long a job may wait for a worker and run, in all.
    var jobTimeoutMs: Int64 = 120_000
    /// This store process, as the holder of the jobs it hands out.
    var owner = JobOwner()
}

/// A store process holds the queued jobs it hands to its workers with a
/// lease in the database, renewed while it runs. Jobs whose lease ran out
/// (their store stopped) are taken by whichever store looks next, so with
/// several stores on one database no job is left behind and none is handed
/// out by two stores at once.
struct JobOwner: Sendable {
    /// Identifies this process (a new one at each start).
    var run = SecureRandom.identifier()
    /// Implementation constants: a lease lasts 15 s and is renewed every 5 s.
    var leaseMs: Int64 = 15_000
    var renewEvery: Duration = .seconds(5)
}

/// A job a committed transaction queued, on its way to the workers.
struct QueuedJob: Sendable {
    var row: JobRow
    var job: IPCAIJob
}

extension Operations {
    /// AI_MESSAGE (docs/protocol.md §5.12, §8): the checks in the original's
    /// order, then a job for the workers. A request to write the user's next
    /// message is dropped without an answer when one is already queued for
    /// them in the room (clients in "bot" mode ask again for every copy they
    /// receive) or when the room's newest message is another user's AI reply
    /// (two bots would otherwise answer each other forever).
    ///
    /// `admit` applies the rate limits; it returns the error text when the
    /// request is over them.
    func requestAI(
        _ tx: any StoreTransaction, roomId: String, content: String, policy: AIPolicy, nowMs: Int64,
        admit: (UserRow, RoomRow) -> String?
    ) throws -> Outcome {
        let user = try requireUser(tx)
        let room = try lookUpRoom(tx, roomId)
        guard try tx.isMember(room: room.rowId, user: user.rowId) else { return .error(ProtocolText.joinBeforeAI) }
        let mode = content.isEmpty ? "generate" : "improve"
        let skipped = Outcome.respond { $0.done = IPCDone() }
        if mode == "generate" {
            if try tx.hasQueuedJob(room: room.rowId, user: user.rowId, mode: mode) { return skipped }
            if let latest = try tx.latestMessage(room: room.rowId), latest.generated, latest.user != user.rowId { return skipped }
        }
        if let refusal = admit(user, room) { return .error(refusal) }

        var job = IPCAIJob()
        job.roomID = room.roomId
        job.roomName = room.name
        job.userName = user.name
        job.draft = content
        job.context = Self.capped(try tx.context(room: room.rowId, limit: policy.contextMessages), bytes: policy.contextBytes)
        let row = JobRow(
            jobId: SecureRandom.identifier(), roomRowId: room.rowId, userRowId: user.rowId, sessionId: sessionId, mode: mode,
            request: try job.serializedBytes(), state: "queued", createdAt: nowMs, deadlineAt: nowMs + policy.jobTimeoutMs,
            leasedBy: policy.owner.run, leaseUntil: nowMs + policy.owner.leaseMs)
        try tx.insertJob(row)
        var outcome = skipped
        outcome.jobs = [QueuedJob(row: row, job: job)]
        return outcome
    }

    /// The newest messages whose text fits in `bytes`, oldest first.
    static func capped(_ context: [IPCContextMessage], bytes: Int) -> [IPCContextMessage] {
        var total = 0
        var kept: [IPCContextMessage] = []
        for message in context.reversed() {
            total += message.name.utf8.count + message.content.utf8.count + 2
            if total > bytes { break }
            kept.append(message)
        }
        return kept.reversed()
    }

    /// Stores a worker's reply as the requester's message (marked as AI
    /// written, docs/protocol.md §5.12) and broadcasts it. A job that already
    /// ended stores nothing: a second worker's late reply is dropped here.
    static func completeJob(_ tx: any StoreTransaction, jobId: String, text: String, nowMs: Int64) throws -> Outcome {
        let done = Outcome.respond { $0.done = IPCDone() }
        guard let row = try tx.job(id: jobId), row.state == "queued" else { return done }
        let job = try IPCAIJob(serializedBytes: row.request)
        let trimmed = TextRules.trimmed(text)
        guard !trimmed.isEmpty else { return try failJob(tx, jobId: jobId, reason: "No response received.", nowMs: nowMs) }
        guard let room = try tx.room(roomId: job.roomID) else {
            return try failJob(tx, jobId: jobId, reason: "the room was closed.", nowMs: nowMs)
        }
        guard let user = try tx.user(rowId: row.userRowId), try tx.isMember(room: room.rowId, user: user.rowId) else {
            return try failJob(tx, jobId: jobId, reason: "you are no longer a member of the room.", nowMs: nowMs)
        }
        let ops = Operations(now: nowMs / 1000, sessionId: row.sessionId)
        // A model's reply has no length of its own: cut it to what one
        // broadcast copy carries (the largest message id stands in for the new one).
        let text = MessageEvent(
            roomId: room.roomId, messageId: .max, userId: user.userId, name: user.name, content: trimmed, timestamp: ops.now
        ).contentFittingOneCopy()
        let messageId = try tx.insertMessage(room: room.rowId, user: user.rowId, content: text, isAnnouncement: true, now: ops.now)
        try tx.touchRoom(room.rowId, now: ops.now)
        _ = try tx.finishJob(id: jobId, state: "done", messageId: messageId, error: nil, now: nowMs)
        var outcome = done
        outcome.events = [try ops.messageEvent(tx, room, messageId, by: user, text)]
        return outcome
    }

    /// Ends a job with an error for its requester: `AI generation failed: <reason>`.
    static func failJob(_ tx: any StoreTransaction, jobId: String, reason: String, nowMs: Int64) throws -> Outcome {
        var outcome = Outcome.respond { $0.done = IPCDone() }
        guard let row = try tx.job(id: jobId), row.state == "queued" else { return outcome }
        let text = ProtocolText.aiFailed(reason)
        _ = try tx.finishJob(id: jobId, state: "failed", messageId: nil, error: text, now: nowMs)
        var notice = IPCSessionNotice()
        notice.sessionID = row.sessionId
        notice.error = text
        var event = IPCEvent()
        event.sessionNotice = notice
        outcome.events = [event]
        return outcome
    }
}

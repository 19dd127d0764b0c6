import ChatLog
import ChatWire
import IPC
import IPCMessages
import Logging
import Synchronization

/// Numbers committed events and publishes them on PUB (topic `event`),
/// with a ``IPCStreamMark`` every half second so that a subscriber can tell
/// it missed something: ZeroMQ drops what is published while a subscriber
/// (re)connects, and a quiet room would otherwise never show the gap.
final class EventStream: Sendable {
    static let topic = "event"
    /// Implementation constant: how often a mark is published. A subscriber
    /// learns of a lost event within this, even when nothing else happens.
    static let markInterval: Duration = .milliseconds(500)

    /// Identifies this run of the store: event ids start again at 1 after a restart.
    let run = SecureRandom.identifier()
    private let publisher: Publisher
    private let logger: Logger
    /// The last event id given out. Ids are given and events queued under
    /// this lock, so the publisher sends them in id order.
    private let lastId = Mutex<UInt64>(0)

    init(publisher: Publisher, logger: Logger) {
        self.publisher = publisher
        self.logger = logger
    }

    /// Publishes `events` in order; called by the group commit after the
    /// transaction holding them committed, one batch at a time.
    func publish(_ events: [IPCEvent]) {
        guard !events.isEmpty else { return }
        lastId.withLock { lastId in
            for var event in events {
                do {
                    event.eventID = lastId + 1
                    event.run = run
                    publisher.publish(topic: Self.topic, body: try event.serializedBytes())
                    lastId += 1
                } catch {
                    logger.error("cannot encode event", metadata: .fields(.error(error)))
                }
            }
        }
    }

    /// Publishes a mark: this run, and the id of the last event published.
    func mark() {
        lastId.withLock { lastId in
            var mark = IPCStreamMark()
            mark.run = run
            mark.lastEventID = lastId
            var event = IPCEvent()
            event.run = run
            event.mark = mark
            publisher.publish(topic: Self.topic, body: (try? event.serializedBytes()) ?? [])
        }
    }
}

import Common
import Logging
import Synchronization

/// Numbers committed events and publishes them on PUB (topic `event`).
final class EventStream: Sendable {
    static let topic = "event"
    private let publisher: Publisher
    private let logger: Logger
    private let nextId = Mutex<UInt64>(1)

    init(publisher: Publisher, logger: Logger) {
        self.publisher = publisher
        self.logger = logger
    }

    /// Publishes `events` in order; called by the group commit after the
    /// transaction holding them committed, one batch at a time.
    func publish(_ events: [IPCEvent]) {
        guard !events.isEmpty else { return }
        let first = nextId.withLock { id -> UInt64 in
            defer { id += UInt64(events.count) }
            return id
        }
        for (offset, var event) in events.enumerated() {
            event.eventID = first + UInt64(offset)
            do {
                publisher.publish(topic: Self.topic, body: try event.serializedBytes())
            } catch {
                logger.error("cannot encode event: \(error)")
            }
        }
    }
}

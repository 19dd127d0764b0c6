import ChatWire
import Logging

/// A value a log line carries, with the one name it has in every program.
/// Log messages say what happened in fixed words; the values go here, so a
/// log collector can filter and count by them (`session=…`, `error=…`).
public enum LogField: Sendable {
    /// What went wrong; a ``ChatError`` adds its `code`.
    case error(any Error)
    /// Why, when it is not an `Error`.
    case reason(String)
    /// A client's session id.
    case session(String)
    /// The program or service at the other end (`udpchat-store`).
    case peer(String)
    /// An address: a ZeroMQ endpoint, a client's source, a URL.
    case address(String)
    /// An AI job's id.
    case job(String)
    /// An AI worker's name.
    case worker(String)
    /// A room id.
    case room(String)
    /// How many (sessions, jobs, frames, slots…; the message says of what).
    case count(Int)
    /// A file or directory.
    case path(String)
    /// A store's run: the events it publishes are numbered within it.
    case run(String)
    /// Any other named value.
    case value(String, String)

    var pairs: [(String, Logger.MetadataValue)] {
        if case .error(let error as ChatError) = self { return [("error", "\(error.message)"), ("code", "\(error.code)")] }
        return [pair]
    }

    private var pair: (String, Logger.MetadataValue) {
        switch self {
        case .error(let error): ("error", "\(error)")
        case .reason(let reason): ("reason", "\(reason)")
        case .session(let id): ("session", "\(id)")
        case .peer(let name): ("peer", "\(name)")
        case .address(let address): ("address", "\(address)")
        case .job(let id): ("job", "\(id)")
        case .worker(let name): ("worker", "\(name)")
        case .room(let id): ("room", "\(id)")
        case .count(let count): ("count", "\(count)")
        case .path(let path): ("path", "\(path)")
        case .run(let run): ("run", "\(run)")
        case .value(let name, let value): (name, "\(value)")
        }
    }
}

extension Logger.Metadata {
    /// Metadata from typed fields: `metadata: .fields(.session(id), .error(error))`.
    public static func fields(_ fields: LogField...) -> Logger.Metadata {
        Logger.Metadata(fields.flatMap(\.pairs), uniquingKeysWith: { $1 })
    }
}

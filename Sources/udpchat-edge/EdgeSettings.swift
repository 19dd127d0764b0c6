import ChatWire
import Ops
#if canImport(Glibc)
import Glibc
#endif

/// The edge's settings (the README and `.env.sample` document each).
struct EdgeSettings: Sendable {
    var common: CommonSettings
    var host: String
    var port: Int
    /// Empty: the only edge (it delivers to every session).
    var edgeId: String
    var reusePort: Bool
    var bufferSize: Int
    var retryInterval: Duration
    var retryTransmissions: Int
    var retryMode: String
    var retryBudget: Duration
    var sessionIdle: Duration
    var broadcastIdle: Duration
    var maxPendingHandshakes: Int
    var sessionsPerSource: Int
    var maxSessions: Int
    var maxAnonymousSessions: Int
    /// nil: no limit.
    var memoryLimitBytes: Int?
    var handshakesPerSource: Double
    var errorsPerSource: Double
    var exemptSources: Set<String>
    var loginsPerSourcePerMinute: Double
    var messagesPerUser: Double

    /// `EDGE_ID` with each `%H` replaced by the host's name, as systemd does:
    /// replicas of one container service (`--scale`) each have a host name
    /// of their own, so one setting names each differently.
    static func edgeId(_ setting: String, hostName: String) -> String {
        setting.replacingOccurrences(of: "%H", with: hostName)
    }

    /// This machine's (or container's) host name, empty if it has none.
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    init(_ settings: SettingsReader) throws {
        common = try CommonSettings(settings)
        host = settings.string(.serverIP, default: "127.0.0.1")
        port = try settings.int(.serverPort)
        edgeId = Self.edgeId(settings.string(.edgeID, default: ""), hostName: Self.hostName())
        guard edgeId.count <= 64, edgeId.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw ChatError.configuration("\(Setting.edgeID.name)=\(edgeId): up to 64 letters, digits, '-', '_' or '.'")
        }
        reusePort = try settings.bool(.reusePort)
        bufferSize = try settings.int(.bufferSize)
        retryInterval = .milliseconds(try settings.int(.retryInterval))
        retryTransmissions = try settings.int(.retryTransmissions)
        retryMode = settings.string(.retryMode, default: "adaptive")
        guard ["adaptive", "fixed"].contains(retryMode) else {
            throw ChatError.configuration("\(Setting.retryMode.name)=\(retryMode): expected adaptive or fixed")
        }
        retryBudget = .milliseconds(try settings.int(.retryBudget))
        sessionIdle = .seconds(try settings.int(.sessionIdle))
        // docs/protocol.md Appendix B, item 7: at least 60 s after the last packet.
        broadcastIdle = .seconds(try settings.int(.broadcastIdle))
        maxPendingHandshakes = try settings.int(.maxPendingHandshakes)
        sessionsPerSource = try settings.int(.sessionsPerSource)
        maxSessions = try settings.int(.maxSessions)
        maxAnonymousSessions = try settings.int(.maxAnonymousSessions)
        let megabytes = try settings.int(.edgeMemoryLimit)
        memoryLimitBytes = megabytes == 0 ? nil : megabytes << 20
        handshakesPerSource = Double(try settings.int(.handshakesPerSource))
        errorsPerSource = Double(try settings.int(.errorsPerSource))
        loginsPerSourcePerMinute = Double(try settings.int(.loginsPerSource))
        messagesPerUser = Double(try settings.int(.messagesPerUser))
        exemptSources = Set(settings.string(.rateLimitExempt, default: "").split(separator: ",").map { TextRules.trimmed(String($0)) })
            .subtracting([""])
    }
}

extension EdgeSettings {
    /// How broadcast copies are delivered and retransmitted.
    var deliveryPolicy: DeliveryEngine.Policy {
        DeliveryEngine.Policy(
            timing: retryMode == "fixed"
                ? .fixed(interval: retryInterval.nanoseconds, transmissions: retryTransmissions)
                : .adaptive(budget: retryBudget.nanoseconds),
            broadcastIdle: broadcastIdle.nanoseconds)
    }
}

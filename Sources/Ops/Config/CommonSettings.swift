import ChatWire
import IPC

/// The paths and endpoints every program shares.
public struct CommonSettings: Sendable {
    public var dataDir: String
    public var runDir: String
    public var keysDir: String
    public var dbPath: String
    public var keysEndpoint: String
    public var storeEndpoint: String
    public var eventsEndpoint: String
    public var keysBind: String
    public var storeBind: String
    public var eventsBind: String
    public var jobsEndpoint: String
    public var jobsBind: String
    public var curveDir: String
    public var rpcTimeout: Duration
    public var logLevel: String

    public init(_ settings: SettingsReader) throws {
        dataDir = settings.string(.dataDir, default: "./data")
        runDir = settings.string(.runDir, default: dataDir + "/run")
        keysDir = settings.string(.keysDir, default: dataDir + "/keys")
        dbPath = settings.string(.dbPath, default: dataDir + "/udpchat.db")
        keysEndpoint = settings.string(.keysEndpoint, default: "ipc://\(runDir)/keys.sock")
        storeEndpoint = settings.string(.storeEndpoint, default: "ipc://\(runDir)/store.sock")
        eventsEndpoint = settings.string(.eventsEndpoint, default: "ipc://\(runDir)/events.sock")
        keysBind = settings.string(.keysBind, default: keysEndpoint)
        // With several stores the edge's endpoints are lists, and each store
        // names its own addresses.
        let severalStores = storeEndpoint.contains(",") || eventsEndpoint.contains(",")
        storeBind = settings.string(.storeBind, default: severalStores ? "" : storeEndpoint)
        eventsBind = settings.string(.eventsBind, default: severalStores ? "" : eventsEndpoint)
        jobsEndpoint = settings.string(.jobsEndpoint, default: "ipc://\(runDir)/jobs.sock")
        jobsBind = settings.string(.jobsBind, default: jobsEndpoint)
        curveDir = settings.string(.curveDir, default: keysDir + "/curve")
        for endpoint in [keysEndpoint, keysBind, jobsEndpoint, jobsBind] {
            try Endpoint.validate(endpoint)
        }
        _ = try Endpoint.list(storeEndpoint)
        _ = try Endpoint.list(eventsEndpoint)
        for (setting, endpoint) in [(Setting.storeBind, storeBind), (.eventsBind, eventsBind)] where !endpoint.isEmpty {
            guard !endpoint.contains(",") else { throw ChatError.configuration("\(setting.name)=\(endpoint): a store binds one address") }
            try Endpoint.validate(endpoint)
        }
        rpcTimeout = .milliseconds(try settings.int(.rpcTimeout))
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        var level = settings.string(.logLevel, default: "info").lowercased()
        guard levels.contains(level) else {
            throw ChatError.configuration("\(Setting.logLevel.name)=\(level): expected one of \(levels.joined(separator: ", "))")
        }
        if try settings.bool(.debug), level != "trace" { level = "debug" }
        logLevel = level
    }

    /// The CURVE security of `role`'s `tcp://` endpoints (nil when it has
    /// none): who may connect to what it binds, and the keys of what it
    /// connects to (docs/security.md, "Who reaches what").
    public func planeSecurity(for role: PlaneRole) throws -> PlaneSecurity? {
        switch role {
        case .keys:
            return try PlaneSecurity.load(directory: curveDir, role: role, binds: [(keysBind, [.edge])], connects: [])
        case .store:
            return try PlaneSecurity.load(
                directory: curveDir, role: role, binds: [(storeBind, [.edge]), (eventsBind, [.edge]), (jobsBind, [.ai])], connects: [])
        case .edge:
            // Several stores: each endpoint of the lists is connected to on its own.
            let stores = try (Endpoint.list(storeEndpoint) + Endpoint.list(eventsEndpoint)).map { (endpoint: $0, server: PlaneRole.store) }
            return try PlaneSecurity.load(directory: curveDir, role: role, binds: [], connects: [(endpoint: keysEndpoint, server: .keys)] + stores)
        case .ai:
            return try PlaneSecurity.load(directory: curveDir, role: role, binds: [], connects: [(jobsEndpoint, .store)])
        }
    }

}

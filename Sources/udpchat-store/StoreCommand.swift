import ArgumentParser
import ChatLog
import ChatWire
import IPC
import IPCMessages
import Logging
import Ops
import ServiceLifecycle

@main
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-store",
        abstract: "Users, sessions, rooms, members and messages in SQLite or PostgreSQL.",
        discussion: "With no subcommand it serves udpchat-edge over ZeroMQ and publishes an event after each commit.",
        subcommands: [Serve.self, Migrate.self, Backup.self, Restore.self, CopyTo.self, UserCommand.self, ImportLegacy.self],
        defaultSubcommand: Serve.self)
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations and list them.")

    func run() throws {
        do {
            let location = try StoreDatabase.location(try SettingsReader.load())
            let result = try StoreDatabase.migrate(location, logger: Logger(label: "udpchat-store"))
            print("database: \(location)")
            print("applied now: \(result.applied.isEmpty ? "none" : result.applied.joined(separator: ", "))")
            print("schema: \(result.all.joined(separator: ", "))")
        } catch {
            ProgramIO.printError("udpchat-store: \(error)")
            throw ExitCode.failure
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the store (the default).")

    @Option(help: "Port of /metrics, /healthz and /readyz (overrides STORE_METRICS_PORT; 0: any free one).")
    var metricsPort: Int?

    func run() async throws {
        try await ProgramRunner("udpchat-store", metricsPort: .storeMetricsPort)
            .run(metricsPortOverride: metricsPort) { program in try await serve(program) }
    }

    private func serve(_ program: ProgramRunner.Context) async throws -> ProgramRunner.Serving {
        let (settings, common, logger) = (program.settings, program.common, program.logger)
        StoreMetrics.prepare()
        let idle = try settings.int(.sessionIdle)
        var policy = AIPolicy()
        policy.contextMessages = try settings.int(.aiContextMessages)
        policy.contextBytes = try settings.int(.aiContextBytes)
        policy.jobTimeoutMs = Int64(try settings.int(.aiJobTimeout))
        let limiter = AIRateLimiter(
            perUserPerMinute: try settings.int(.aiUserRate),
            perRoomPerMinute: try settings.int(.aiRoomRate))
        var timing = JobBroker.Timing()
        timing.heartbeat = try settings.aiHeartbeat()
        timing.lease = .milliseconds(try settings.int(.aiLease))
        let database = try StoreDatabase.location(settings)
        if common.storeBind.isEmpty || common.eventsBind.isEmpty {
            throw ChatError.configuration(
                "STORE_ENDPOINT or EVENTS_ENDPOINT lists several stores: set this store's own STORE_BIND and EVENTS_BIND")
        }
        if case .sqlite = database, common.storeEndpoint.contains(",") {
            throw ChatError.configuration("STORE_ENDPOINT lists several stores, which share one database: set DATABASE_URL (PostgreSQL)")
        }
        let backend = try StoreDatabase.open(database, logger: logger)
        try SocketDirectory.prepare(binding: [common.storeBind, common.eventsBind, common.jobsBind])
        let reactor = ZMQReactor(context: ZMQContext(security: try common.planeSecurity(for: .store)), name: "store-zmq")
        let events = EventStream(
            publisher: try Publisher(reactor: reactor, endpoint: common.eventsBind, logger: logger), logger: logger)
        let broker = try JobBroker(reactor: reactor, endpoint: common.jobsBind, timing: timing, logger: logger)
        let service = StoreService(
            backend: backend, sessionIdleSeconds: idle, aiPolicy: policy, limiter: limiter,
            writeLimits: WriteLimits(
                roomsPerMinute: try settings.int(.roomsPerUser),
                membershipChangesPerMinute: try settings.int(.joinsPerUser)),
            requirePasswords: try settings.bool(.requirePasswords),
            loginFailuresPerAccount: try settings.int(.loginFailuresPerAccount), logger: logger
        ) { [broker] outcomes in
            events.publish(outcomes.flatMap(\.events))
            for job in outcomes.flatMap(\.jobs) { broker.post.yield(.enqueued(job)) }
            StoreMetrics.committed(outcomes)
        }
        let server = try RPCServer(reactor: reactor, endpoint: common.storeBind, logger: logger, requestType: IPCStoreRequest.self) {
            await service.handle($0)
        }
        let ops = try await program.startOps { [service] in
            OpsServer.readiness([("database", await service.databaseResponds())])
        }
        logger.info(
            "serving", metadata: .fields(
                .address(common.storeBind), .value("events", common.eventsBind), .value("jobs", common.jobsBind),
                .value("db", "\(database)")))
        // On SIGTERM: refuse new requests, let those in flight commit and be
        // answered, then stop (a drained group commit leaves nothing unwritten).
        let services: [any Service] = [
            ReactorService(reactor: reactor, ops: ops) { await server.drain(limit: .seconds(5)) },
            SessionExpiry(service: service, logger: logger), BrokerService(broker: broker, service: service),
            StreamMarks(events: events),
        ]
        return .init(ready: "endpoint=\(common.storeBind) events=\(common.eventsBind) jobs=\(common.jobsBind)", services: services)
    }
}

/// Deletes idle sessions once a minute.
struct SessionExpiry: Service {
    let service: StoreService
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let deleted = await service.expireIdleSessions()
            if deleted > 0 { logger.info("idle sessions expired", metadata: .fields(.count(deleted))) }
        }
    }
}

/// Publishes the event stream's mark every half second until shutdown.
struct StreamMarks: Service {
    let events: EventStream

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            events.mark()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: EventStream.markInterval) }
        }
    }
}

/// Runs the AI job broker until shutdown.
struct BrokerService: Service {
    let broker: JobBroker
    let service: StoreService

    func run() async throws {
        let task = Task { await broker.run(service: service) }
        try? await gracefulShutdown()
        broker.post.finish()
        await task.value
    }
}

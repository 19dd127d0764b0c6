import ArgumentParser
import Common
import Foundation
import Logging
import ServiceLifecycle

@main
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-store",
        abstract: "Users, sessions, rooms, members and messages in SQLite; the only writer.",
        discussion: "With no subcommand it serves udpchat-edge over ZeroMQ and publishes an event after each commit.",
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations and list them.")

    func run() throws {
        do {
            let common = try CommonSettings(try SettingsReader.load())
            let result = try SQLiteBackend.migrate(path: common.dbPath)
            print("database: \(common.dbPath)")
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

    func run() async throws {
        let logger: Logger
        let service: StoreService
        let reactor: ZMQReactor
        do {
            let settings = try SettingsReader.load()
            let common = try CommonSettings(settings)
            ProgramIO.bootstrapLogging(level: common.logLevel)
            logger = Logger(label: "udpchat-store")
            let idle = try settings.int(.sessionIdle, default: 600, range: 60...31_536_000)
            let backend = try SQLiteBackend(path: common.dbPath)
            try common.createSocketDirectories(for: [common.storeBind, common.eventsBind])
            reactor = ZMQReactor(context: ZMQContext(), name: "store-zmq")
            let events = EventStream(
                publisher: try Publisher(reactor: reactor, endpoint: common.eventsBind, logger: logger), logger: logger)
            service = StoreService(backend: backend, sessionIdleSeconds: idle, logger: logger) { events.publish($0) }
            _ = try RPCServer(reactor: reactor, endpoint: common.storeBind, logger: logger, requestType: IPCStoreRequest.self) {
                await service.handle($0)
            }
            logger.info("serving on \(common.storeBind), events on \(common.eventsBind)", metadata: ["db": "\(common.dbPath)"])
            ProgramIO.announceReady("udpchat-store ready endpoint=\(common.storeBind) events=\(common.eventsBind)")
        } catch {
            ProgramIO.printError("udpchat-store: \(error)")
            throw ExitCode.failure
        }
        let services: [any Service] = [ReactorService(reactor: reactor), SessionExpiry(service: service, logger: logger)]
        try await ServiceGroup.program(services: services, logger: logger).run()
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
            if deleted > 0 { logger.info("expired \(deleted) idle sessions") }
        }
    }
}

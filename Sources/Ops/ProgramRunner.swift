import ArgumentParser
import ChatWire
import Logging
import ServiceLifecycle
import Synchronization

/// How every server program starts and stops, written once: settings are
/// read and checked, logging and metrics set up, the program's own start
/// runs, its ready line is printed, and its services run until SIGTERM or
/// SIGINT. A failure before serving is one line on stderr
/// (`PROGRAM: why`) and exit status 1; nothing is left running.
public struct ProgramRunner: Sendable {
    /// The program's name: its logger's label and the first word of its lines.
    public let name: String
    /// The setting that names the port of /metrics, /healthz and /readyz,
    /// and an older setting read when it is unset.
    public let metricsPort: (setting: Setting, fallback: Setting?)

    public init(_ name: String, metricsPort setting: Setting, fallback: Setting? = nil) {
        self.name = name
        metricsPort = (setting, fallback)
    }

    /// What a program's start hands to the runner.
    public struct Serving {
        /// What the ready line says after `PROGRAM ready`; the runner adds
        /// `metrics=URL`, then `readyEnd`.
        public var ready: String
        public var readyEnd: String
        /// Run until shutdown; each drains in its own `run()`.
        public var services: [any Service]
        /// How long draining may take before the services are cancelled.
        public var drainLimit: Duration
        /// For a program whose services open their sockets as they run:
        /// returns, once they listen, what the ready line adds after
        /// `ready`. The line waits for it.
        public var listening: (@Sendable () async throws -> String)?

        public init(
            ready: String, readyEnd: String = "", services: [any Service], drainLimit: Duration = .seconds(10),
            listening: (@Sendable () async throws -> String)? = nil
        ) {
            self.ready = ready
            self.readyEnd = readyEnd
            self.services = services
            self.drainLimit = drainLimit
            self.listening = listening
        }
    }

    /// What a program's start has to work with.
    public final class Context: Sendable {
        public let settings: SettingsReader
        public let common: CommonSettings
        public let logger: Logger
        let endpoint: OpsEndpoint
        let server = Mutex<OpsServer?>(nil)
        let exits = Mutex<[@Sendable () async -> Void]>([])

        init(settings: SettingsReader, common: CommonSettings, logger: Logger, endpoint: OpsEndpoint) {
            self.settings = settings
            self.common = common
            self.logger = logger
            self.endpoint = endpoint
        }

        /// Starts /metrics, /healthz and /readyz with the program's readiness checks.
        public func startOps(readiness: @escaping OpsServer.Route) async throws -> OpsServer {
            let ops = try await endpoint.start(logger: logger, readiness: readiness)
            server.withLock { $0 = ops }
            return ops
        }

        /// Runs `body` when the program ends, whether its start failed or it served and stopped.
        public func atExit(_ body: @escaping @Sendable () async -> Void) {
            exits.withLock { $0.append(body) }
        }

        func runExits() async {
            for body in exits.withLock({ $0 }).reversed() { await body() }
        }
    }

    /// Runs the program: `start` builds it and returns what to serve;
    /// `metricsPortOverride` is the program's `--metrics-port`.
    public func run(metricsPortOverride: Int? = nil, _ start: (Context) async throws -> Serving) async throws {
        let context: Context
        do {
            let settings = try SettingsReader.load()
            let common = try CommonSettings(settings)
            var endpoint = try OpsEndpoint(settings, port: metricsPort.setting, fallback: metricsPort.fallback)
            if let metricsPortOverride {
                guard (0...65535).contains(metricsPortOverride) else { throw ChatError.configuration("--metrics-port must be 0 to 65535") }
                endpoint.port = metricsPortOverride
            }
            ProgramIO.bootstrapLogging(level: common.logLevel)
            Observability.bootstrap()
            context = Context(settings: settings, common: common, logger: Logger(label: name), endpoint: endpoint)
        } catch {
            ProgramIO.printError("\(name): \(error)")
            throw ExitCode.failure
        }
        let serving: Serving
        do {
            serving = try await start(context)
        } catch {
            ProgramIO.printError("\(name): \(error)")
            await context.server.withLock({ $0 })?.close()
            await context.runExits()
            throw ExitCode.failure
        }
        let metrics = context.server.withLock({ $0 }).map { " metrics=\($0.url(host: context.endpoint.host))" } ?? ""
        let (head, end) = ("\(name) ready \(serving.ready)", serving.readyEnd.isEmpty ? "" : " \(serving.readyEnd)")
        let announce = { @Sendable (listening: String) in ProgramIO.announceReady(head + listening + metrics + end) }
        var configuration = ServiceGroupConfiguration(
            services: serving.services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: context.logger)
        configuration.maximumGracefulShutdownDuration = serving.drainLimit
        let services = ServiceGroup(configuration: configuration)
        do {
            guard let listening = serving.listening else {
                announce("")
                try await services.run()
                await context.runExits()
                return
            }
            try await withThrowingTaskGroup(of: Bool.self) { tasks in
                tasks.addTask {
                    try await services.run()
                    return true
                }
                tasks.addTask {
                    announce(try await listening())
                    return false
                }
                // When the services end, an announcement still waiting will never come.
                while let servicesEnded = try await tasks.next() {
                    if servicesEnded { tasks.cancelAll() }
                }
            }
        } catch {
            await context.runExits()
            throw error
        }
        await context.runExits()
    }
}

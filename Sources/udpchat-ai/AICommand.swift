import ArgumentParser
import AsyncHTTPClient
import ChatWire
import Foundation
import IPC
import Logging
import NIOCore
import Ops
import ServiceLifecycle

@main
struct AICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-ai",
        abstract: "An AI worker: takes AI_MESSAGE jobs from udpchat-store and writes the replies with a language model.",
        discussion: """
            Start as many as you like, on this host or others: each connects to JOBS_ENDPOINT and the store \
            shares the jobs among them. AI_MODE chooses the provider (see the README).
            """)

    @Option(help: "Jobs this process runs at once (overrides AI_CONCURRENCY).")
    var concurrency: Int?
    @Option(help: "Name in the store's logs (default: host and process id).")
    var name: String?
    @Option(help: "Port of /metrics, /healthz and /readyz (overrides AI_METRICS_PORT; 0: any free one).")
    var metricsPort: Int?

    func run() async throws {
        var settings: WorkerSettings
        var endpoint: OpsEndpoint
        do {
            let reader = try SettingsReader.load()
            settings = try WorkerSettings(reader)
            endpoint = try OpsEndpoint(reader, port: .aiMetricsPort, default: 9104)
        } catch {
            ProgramIO.printError("udpchat-ai: \(error)")
            throw ExitCode.failure
        }
        if let concurrency {
            guard (1...1024).contains(concurrency) else {
                ProgramIO.printError("udpchat-ai: --concurrency must be 1 to 1024")
                throw ExitCode.failure
            }
            settings.concurrency = concurrency
        }
        if let metricsPort {
            guard (0...65535).contains(metricsPort) else {
                ProgramIO.printError("udpchat-ai: --metrics-port must be 0 to 65535")
                throw ExitCode.failure
            }
            endpoint.port = metricsPort
        }
        ProgramIO.bootstrapLogging(level: settings.common.logLevel)
        Observability.bootstrap()
        Worker.prepareMetrics()
        let logger = Logger(label: "udpchat-ai")
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"

        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.timeout.connect = .seconds(5)
        // A refused connection is an answer, not a reason to keep trying until
        // the deadline: the requester hears at once that the model is down.
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration)
        let model = settings.model(client: client)
        let security: PlaneSecurity?
        do {
            security = try settings.common.planeSecurity(for: .ai)
        } catch {
            ProgramIO.printError("udpchat-ai: \(error)")
            try? await client.shutdown()
            throw ExitCode.failure
        }
        let reactor = ZMQReactor(context: ZMQContext(security: security), name: "ai-zmq")
        let worker: Worker
        let ops: OpsServer
        do {
            try SocketDirectory.check([settings.common.jobsEndpoint])
            let inbox = MutexBox<Worker?>(nil)
            let dealer = try MessageDealer(
                reactor: reactor, connect: settings.common.jobsEndpoint,
                routingId: "\(workerName)-\(SecureRandom.identifier().prefix(8))", logger: logger
            ) { body in inbox.value?.received(body) }
            worker = Worker(
                options: .init(name: workerName, concurrency: settings.concurrency, heartbeat: settings.heartbeat, limits: settings.limits),
                model: model, logger: logger
            ) { dealer.send($0) }
            inbox.value = worker
            ops = try await endpoint.start(logger: logger) { [worker] in OpsServer.readiness([("udpchat-store", worker.storeResponds)]) }
        } catch {
            ProgramIO.printError("udpchat-ai: \(error)")
            try? await client.shutdown()
            throw ExitCode.failure
        }
        worker.sendStatus()
        logger.info("taking jobs from \(settings.common.jobsEndpoint)", metadata: ["model": "\(model.summary)"])
        ProgramIO.announceReady(
            "udpchat-ai ready jobs=\(settings.common.jobsEndpoint) concurrency=\(settings.concurrency) metrics=\(ops.url(host: endpoint.host)) "
                + model.summary)

        let heartbeat = Task { await worker.heartbeat() }
        // On SIGTERM: take no more jobs, finish the running ones (or hand them
        // back after 10 s), then stop.
        let service = ReactorService(reactor: reactor, ops: ops) {
            await worker.drain(limit: .seconds(10))
            heartbeat.cancel()
        }
        try await ServiceGroup.program(services: [service], logger: logger, drainLimit: .seconds(15)).run()
        try? await client.shutdown()
    }
}

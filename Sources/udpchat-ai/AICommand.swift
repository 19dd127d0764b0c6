import ArgumentParser
import AsyncHTTPClient
import ChatLog
import ChatWire
import Foundation
import IPC
import NIOCore
import Ops

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
        try await ProgramRunner("udpchat-ai", metricsPort: .aiMetricsPort)
            .run(metricsPortOverride: metricsPort) { program in try await serve(program) }
    }

    private func serve(_ program: ProgramRunner.Context) async throws -> ProgramRunner.Serving {
        var settings = try WorkerSettings(program.settings)
        if let concurrency {
            guard (1...1024).contains(concurrency) else { throw ChatError.configuration("--concurrency must be 1 to 1024") }
            settings.concurrency = concurrency
        }
        Worker.prepareMetrics()
        let logger = program.logger
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"

        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.timeout.connect = .seconds(5)
        // A refused connection is an answer, not a reason to keep trying until
        // the deadline: the requester hears at once that the model is down.
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration)
        program.atExit { try? await client.shutdown() }
        let model = settings.model(client: client)
        let reactor = ZMQReactor(context: ZMQContext(security: try settings.common.planeSecurity(for: .ai)), name: "ai-zmq")
        try SocketDirectory.check([settings.common.jobsEndpoint])
        let inbox = MutexBox<Worker?>(nil)
        let dealer = try MessageDealer(
            reactor: reactor, connect: settings.common.jobsEndpoint,
            routingId: "\(workerName)-\(SecureRandom.identifier().prefix(8))", logger: logger
        ) { body in inbox.value?.received(body) }
        let worker = Worker(
            options: .init(name: workerName, concurrency: settings.concurrency, heartbeat: settings.heartbeat, limits: settings.limits),
            model: model, logger: logger
        ) { dealer.send($0) }
        inbox.value = worker
        let ops = try await program.startOps { [worker] in OpsServer.readiness([("udpchat-store", worker.storeResponds)]) }
        worker.sendStatus()
        logger.info("taking jobs", metadata: .fields(.address(settings.common.jobsEndpoint), .value("model", model.summary)))

        let heartbeat = Task { await worker.heartbeat() }
        // On SIGTERM: take no more jobs, finish the running ones (or hand them
        // back after 10 s), then stop.
        let service = ReactorService(reactor: reactor, ops: ops) {
            await worker.drain(limit: .seconds(10))
            heartbeat.cancel()
        }
        return .init(
            ready: "jobs=\(settings.common.jobsEndpoint) concurrency=\(settings.concurrency)", readyEnd: model.summary, services: [service],
            drainLimit: .seconds(15))
    }
}

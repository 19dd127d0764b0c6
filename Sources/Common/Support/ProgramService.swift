import Logging
import ServiceLifecycle

/// Keeps a program's reactor running until SIGTERM or SIGINT, then stops
/// it, and runs `onShutdown` first so the program can drain.
public struct ReactorService: Service {
    let reactor: ZMQReactor
    let onShutdown: @Sendable () async -> Void

    public init(reactor: ZMQReactor, onShutdown: @escaping @Sendable () async -> Void = {}) {
        self.reactor = reactor
        self.onShutdown = onShutdown
    }

    public func run() async throws {
        reactor.start()
        try? await gracefulShutdown()
        await onShutdown()
        reactor.shutdown()
    }
}

extension ServiceGroup {
    /// The group every udpchat program runs: graceful shutdown on SIGTERM
    /// and SIGINT, cancellation if draining takes longer than `drainLimit`.
    public static func program(services: [any Service], logger: Logger, drainLimit: Duration = .seconds(10)) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        configuration.maximumGracefulShutdownDuration = drainLimit
        return ServiceGroup(configuration: configuration)
    }
}

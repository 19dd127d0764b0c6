import ChatWire
import IPC
import ServiceLifecycle

/// Keeps a program's reactor running until SIGTERM or SIGINT, then stops
/// it, and runs `onShutdown` first so the program can drain. It tells
/// systemd when the program is ready and when it stops, and feeds the
/// watchdog when the unit sets one.
public struct ReactorService: Service {
    let reactor: ZMQReactor
    let ops: OpsServer?
    let onShutdown: @Sendable () async -> Void

    public init(reactor: ZMQReactor, ops: OpsServer? = nil, onShutdown: @escaping @Sendable () async -> Void = {}) {
        self.reactor = reactor
        self.ops = ops
        self.onShutdown = onShutdown
    }

    public func run() async throws {
        reactor.start()
        SystemdNotifier.notify("READY=1")
        let watchdog = Task { [reactor] in await SystemdNotifier.keepWatchdogFed { reactor.isResponsive() } }
        try? await gracefulShutdown()
        SystemdNotifier.notify("STOPPING=1")
        await onShutdown()
        reactor.shutdown()
        watchdog.cancel()
        await ops?.close()
    }
}

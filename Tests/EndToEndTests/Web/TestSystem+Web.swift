import ChatWire
import Foundation

extension TestSystem {
    /// Starts udpchat-web toward this system's edge, on a free port, with
    /// `extra` settings; returns it and the page's URL (http://127.0.0.1:PORT/).
    func startWeb(_ extra: [String: String] = [:], name: String = "web") async throws -> (process: ProgramProcess, url: String) {
        var environment = self.environment
        environment.merge(["WS_PORT": "0", "WEB_METRICS_PORT": "0", "UDP_SERVER_HOST": "127.0.0.1", "UDP_SERVER_PORT": String(port)]) { $1 }
        environment.merge(extra) { $1 }
        let web = try ProgramProcess(
            name: name, executable: binaries.appendingPathComponent("udpchat-web"), environment: environment, directory: root)
        extraProcesses.mutate { $0.append(web) }
        _ = try await web.waitForLine(startingWith: "udpchat-web ready")
        return (web, try Self.pageURL(of: web))
    }

    /// The page's URL in a running udpchat-web's ready line.
    static func pageURL(of web: ProgramProcess) throws -> String {
        let line = web.output.first { $0.hasPrefix("udpchat-web ready") } ?? ""
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("url=") }) else {
            throw HarnessError("no url in '\(line)'")
        }
        return String(field.dropFirst("url=".count))
    }
}

/// `body`'s result, or an error once `limit` has passed: a step that can
/// hang (a peer that never answers) fails the test instead of stalling
/// it. A body still running then is left to end when its system stops.
func withDeadline<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = MutexBox<CheckedContinuation<T, any Error>?>(nil)
    return try await withCheckedThrowingContinuation { continuation in
        outcome.value = continuation
        let finish = { @Sendable (result: Result<T, any Error>) in
            outcome.mutate { pending in
                defer { pending = nil }
                return pending
            }?.resume(with: result)
        }
        Task { finish(await Result(catching: body)) }
        Task {
            try? await Task.sleep(for: limit)
            finish(.failure(HarnessError("\(what) did not finish within \(limit)")))
        }
    }
}

extension Result where Failure == any Error {
    /// The outcome of an async throwing body.
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

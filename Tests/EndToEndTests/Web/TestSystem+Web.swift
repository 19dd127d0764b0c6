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
        let line = try await web.waitForLine(startingWith: "udpchat-web ready")
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("url=") }) else {
            throw HarnessError("no url in '\(line)'")
        }
        return (web, String(field.dropFirst("url=".count)))
    }
}

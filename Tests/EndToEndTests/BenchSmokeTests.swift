import ChatWire
import Foundation
import Testing

/// `udpchat bench` against the real programs, briefly: CI's check that the
/// load generator works and that under its load nothing is lost. The
/// figures it prints are not asserted (a benchmark is not a timed test).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BenchSmokeTests {
    /// The JSON line a bench run prints last.
    static func report(_ output: String) throws -> JSONObject {
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "no JSON line in:\n\(output)")
        return try #require(try JSONParser.parse(Array(line.utf8)).objectValue)
    }

    @Test func aShortFanOutRunLosesNothing() async throws {
        try await withSystem(settings: ["RATE_LIMIT_EXEMPT": "127.0.0.1", "MESSAGES_PER_USER": "1000"]) { system in
            let (status, output) = try await system.run(
                "udpchat",
                [
                    "bench", "fanout", "--server", "127.0.0.1:\(system.port)", "--clients", "6", "--rooms", "2", "--duration", "2",
                    "--drain", "20",
                    "--label", "smoke", "--watch", "none", "--pid", "udpchat-edge=\(system.edge.pid)", "--pid",
                    "udpchat-store=\(system.store.pid)",
                ])
            print(output)
            #expect(status == 0, "\(output)")
            let report = try Self.report(output)
            let confirmed = report["confirmed"]?.intValue ?? 0
            #expect(confirmed > 10, "messages were confirmed")
            #expect(report["lost"]?.intValue == 0, "nothing lost")
            #expect(report["unanswered"]?.intValue == 0 && report["refused"]?.intValue == 0, "every message confirmed")
            // Three members per room: each confirmed message is delivered three times.
            #expect(report["deliveries"]?.intValue == 3 * confirmed)
            #expect(report["label"]?.stringValue == "smoke")
            let servers = report["servers"]?.arrayValue?.compactMap { $0.objectValue?["name"]?.stringValue } ?? []
            #expect(servers.sorted() == ["udpchat-edge", "udpchat-store"], "this system's servers' usage is reported: \(servers)")
        }
    }

    /// The same through udpchat-web: every datagram a frame of the
    /// client's WebSocket, and the bridge's own counters show it carried them.
    @Test func aShortFanOutRunThroughTheWebBridgeLosesNothing() async throws {
        try await withSystem(settings: ["RATE_LIMIT_EXEMPT": "127.0.0.1", "MESSAGES_PER_USER": "1000"]) { system in
            let (web, url) = try await system.startWeb(["WEB_MESSAGES_PER_SECOND": "100000"])
            let (status, output) = try await system.run(
                "udpchat",
                [
                    "bench", "fanout", "--web", WebBridgeTests.endpoint(url), "--clients", "6", "--rooms", "2", "--duration", "2",
                    "--drain", "20",
                    "--watch", "none", "--pid", "udpchat-web=\(web.pid)",
                ])
            print(output)
            #expect(status == 0, "\(output)")
            let report = try Self.report(output)
            let confirmed = report["confirmed"]?.intValue ?? 0
            #expect(confirmed > 10 && report["lost"]?.intValue == 0 && report["unanswered"]?.intValue == 0)
            #expect(report["deliveries"]?.intValue == 3 * confirmed)
            // Each message went to the edge through the bridge, and its three copies came back through it.
            #expect(try WebBridgeTests.metric(web, "udpchat_web_frames_total", ["direction=\"to_edge\""]) >= Double(confirmed))
            #expect(try WebBridgeTests.metric(web, "udpchat_web_frames_total", ["direction=\"to_browser\""]) >= Double(3 * confirmed))
        }
    }

    @Test func aShortHandshakeRunCompletesHandshakes() async throws {
        try await withSystem(settings: ["RATE_LIMIT_EXEMPT": "127.0.0.1"]) { system in
            let (status, output) = try await system.run(
                "udpchat", ["bench", "handshakes", "--server", "127.0.0.1:\(system.port)", "--concurrency", "4", "--duration", "1"])
            print(output)
            #expect(status == 0, "\(output)")
            let report = try Self.report(output)
            // The clients start their next handshake when one is done: many more than 4.
            #expect((report["handshakes"]?.intValue ?? 0) >= 12 && report["failed"]?.intValue == 0)
        }
    }

    @Test(arguments: [["--concurrency", "0"], ["--duration=-1"], ["--duration", "1e12"]])
    func aHandshakeRunRefusesOptionsItCannotRun(_ options: [String]) async throws {
        let udpchat = try TestSystem.binaryDirectory().appendingPathComponent("udpchat")
        let (status, output) = try await runDetached(udpchat, ["bench", "handshakes", "--server", "127.0.0.1:9"] + options)
        #expect(status != 0)
        #expect(output.contains("must be"), "\(output)")
    }
}

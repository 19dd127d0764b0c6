import ChatClient
import ChatWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The metrics as Prometheus itself reads them: `promtool check metrics`
/// accepts every program's exposition, and a real Prometheus server scrapes
/// all four programs and answers every query of the Grafana dashboard.
/// (`scripts/bootstrap.sh --test` installs Debian's `prometheus`.)
@Suite(.serialized, .timeLimit(.minutes(3)))
struct PrometheusTests {
    static let prometheus = URL(fileURLWithPath: "/usr/bin/prometheus")
    static let promtool = URL(fileURLWithPath: "/usr/bin/promtool")

    static func requireTools() throws {
        for tool in [prometheus, promtool] {
            try #require(
                FileManager.default.isExecutableFile(atPath: tool.path),
                "\(tool.path) is missing: scripts/bootstrap.sh --test installs Debian's prometheus")
        }
    }

    /// A TCP port nothing listens on now (the kernel's choice for port 0).
    /// A TCP port on 127.0.0.1 that nothing listens on now, for a program to
    /// bind a moment later. Drawn below the kernel's ephemeral range
    /// (`ip_local_port_range`): a port the kernel handed out and took back
    /// could meanwhile become the source port of any outgoing connection,
    /// and the program's bind would find it in use.
    static func freeTCPPort() throws -> Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        let ephemeralStart = range?.first ?? 32_768
        let candidates = ephemeralStart > 11_000 ? 10_000..<(ephemeralStart - 1_000) : 0..<0
        for _ in 0..<200 {
            let port = candidates.isEmpty ? 0 : Int.random(in: candidates)
            if let bound = try bindable(port) { return bound }
            if candidates.isEmpty { break }
        }
        throw HarnessError("no free TCP port below \(ephemeralStart)")
    }

    /// `port` (0: one the kernel picks) if a socket can bind it on 127.0.0.1 now.
    private static func bindable(_ port: Int) throws -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    /// The dashboard's queries, with Grafana's `$__rate_interval` made concrete.
    static func dashboardQueries() throws -> [(panel: String, expr: String)] {
        let data = try Data(contentsOf: OperationsTests.repository.appendingPathComponent("deploy/grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        return panels.flatMap { panel in
            ((panel["targets"] as? [[String: Any]]) ?? []).compactMap { target in
                (target["expr"] as? String).map {
                    (panel["title"] as? String ?? "?", $0.replacingOccurrences(of: "$__rate_interval", with: "1m"))
                }
            }
        }
    }

    /// An instant query's result: each series' labels and value.
    static func query(_ port: Int, _ expr: String) throws -> (status: String, error: String?, values: [Double]) {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = try #require(expr.addingPercentEncoding(withAllowedCharacters: allowed))
        let reply = try OpsProbe.get(port: port, path: "/api/v1/query?query=\(encoded)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any], "not JSON: \(reply.body.prefix(300))")
        let status = json["status"] as? String ?? "?"
        let result = ((json["data"] as? [String: Any])?["result"] as? [[String: Any]]) ?? []
        let values = result.compactMap { series -> Double? in
            guard let pair = series["value"] as? [Any], pair.count == 2, let text = pair[1] as? String else { return nil }
            return Double(text)
        }
        return (status, json["error"] as? String, values)
    }

    @Test func promtoolAcceptsEveryProgramsMetrics() async throws {
        try await Self.withWatchedSystem { system, ports in
            // Before any traffic and after it (series made on first use included).
            for phase in ["idle", "after traffic"] {
                if phase != "idle" { try await Self.traffic(system, round: 0) }
                for (name, port) in ports.sorted(by: { $0.key < $1.key }) {
                    let body = try OpsProbe.get(port: port, path: "/metrics").body
                    #expect(body.contains("# HELP udpchat_"), "\(name)")
                    let checked = try await runDetached(Self.promtool, ["check", "metrics"], input: body)
                    #expect(checked.status == 0 && checked.output.isEmpty, "\(name), \(phase): promtool says \(checked.output)")
                }
            }
        }
    }

    @Test func aPrometheusServerScrapesEveryProgramAndAnswersTheDashboardsQueries() async throws {
        try await Self.withWatchedSystem { system, ports in
            let port = try Self.freeTCPPort()
            let targets = ports.sorted(by: { $0.key < $1.key }).map { name, port in
                "      - targets: ['127.0.0.1:\(port)']\n        labels: {program: \(name)}"
            }
            let config = system.root.appendingPathComponent("prometheus.yml")
            try """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: udpchat
                static_configs:
            \(targets.joined(separator: "\n"))

            """.write(to: config, atomically: true, encoding: .utf8)
            let server = try ProgramProcess(
                name: "prometheus", executable: Self.prometheus,
                arguments: [
                    "--config.file=\(config.path)", "--storage.tsdb.path=\(system.root.appendingPathComponent("tsdb").path)",
                    "--web.listen-address=127.0.0.1:\(port)",
                ],
                environment: system.environment, directory: system.root)
            defer { Task { await server.stop() } }
            _ = try await OpsProbe.wait(port: port, path: "/-/ready", status: 200, timeout: .seconds(30))

            // Every program scraped, and up.
            let deadline = ContinuousClock.now + .seconds(20)
            var up: [Double] = []
            while ContinuousClock.now < deadline {
                up = try Self.query(port, "up").values
                if up.count == ports.count && up.allSatisfy({ $0 == 1 }) { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(up == Array(repeating: 1, count: ports.count), "up: \(up); \(server.log())")

            // Two rounds of traffic, each followed by a scrape of every program,
            // so that every rate has two samples apart.
            func scrapedByAll() async throws -> Bool {
                let now = Date().timeIntervalSince1970
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(250))
                    if let oldest = try Self.query(port, "min(timestamp(up))").values.first, oldest > now { return true }
                }
                return false
            }
            for round in 0..<2 {
                try await Self.traffic(system, round: round)
                #expect(try await scrapedByAll(), "every program scraped after round \(round)")
            }
            // Each round stored 13 messages (12 typed, 1 AI reply).
            #expect(try Self.query(port, "sum(udpchat_store_messages_stored_total)").values == [26])

            // Every query of the dashboard is valid PromQL over what the programs
            // serve; those over a metric the traffic moves have a positive value.
            let moving: Set<String> = [
                "udpchat_edge_datagrams_received_total", "udpchat_edge_datagrams_sent_total", "udpchat_edge_handshakes_total",
                "udpchat_edge_sessions", "udpchat_edge_ack_round_trip_seconds_bucket", "udpchat_rpc_seconds_bucket",
                "udpchat_store_messages_stored_total", "udpchat_store_batch_size_sum", "udpchat_store_batch_size_bucket",
                "udpchat_store_request_seconds_bucket", "udpchat_store_ai_jobs_total", "udpchat_store_ai_workers",
                "udpchat_store_ai_job_seconds_bucket", "udpchat_ai_jobs_total", "udpchat_keys_signatures_total",
            ]
            let queries = try Self.dashboardQueries()
            var queried = Set<String>()
            for (panel, expr) in queries {
                let metric = try #require(expr.firstMatch(of: /udpchat_[a-z_]+/)).output
                queried.insert(String(metric))
                let answer = try Self.query(port, expr)
                #expect(answer.status == "success", "\(panel): \(expr): \(answer.error ?? "?")")
                if moving.contains(String(metric)) {
                    #expect(answer.values.contains { $0.isFinite && $0 > 0 }, "\(panel): \(expr) = \(answer.values)")
                }
            }
            #expect(queries.count >= 20)
            #expect(moving.isSubset(of: queried), "the dashboard no longer shows \(moving.subtracting(queried).sorted())")
        }
    }

    /// The programs, a worker whose model answers at once and udpchat-web;
    /// `body` gets each program's metrics port by name.
    static func withWatchedSystem(_ body: (TestSystem, [String: Int]) async throws -> Void) async throws {
        try requireTools()
        try await withSystem(settings: AIJobTests.fast) { system in
            let provider = try await system.startProvider("ok", reply: "Sounds good to me")
            let worker = try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1"])
            let (web, _) = try await system.startWeb()
            try await body(
                system,
                [
                    "keys": try OperationsTests.metricsPort(system.keys, ready: "udpchat-keys ready"),
                    "store": try OperationsTests.metricsPort(system.store, ready: "udpchat-store ready"),
                    "edge": try OperationsTests.metricsPort(system.edge, ready: "udpchat-edge ready"),
                    "ai": try OperationsTests.metricsPort(worker, ready: "udpchat-ai ready"),
                    "web": try OperationsTests.metricsPort(web, ready: "udpchat-web ready"),
                ])
        }
    }

    /// A handshake through udpchat-web; two new people chat in a new room:
    /// twelve messages, one AI reply.
    static func traffic(_ system: TestSystem, round: Int) async throws {
        let web = try #require(system.extraProcesses.value.first { $0.name == "web" }, "udpchat-web runs")
        _ = try await WebBridgeTests.handshakeAndHello(try TestSystem.pageURL(of: web))
        let acksBefore = try system.edgeMetric("udpchat_edge_ack_round_trip_seconds_count")
        let (alice, bob, _, room) = try await system.aliceAndBob(in: "Round \(round)", tag: "\(round)")
        for n in 0..<12 { _ = try await (n % 2 == 0 ? alice : bob).sendMessage(roomId: room.roomId, content: "message \(n)") }
        #expect(try await alice.askAIAndWait(roomId: room.roomId, listener: bob), "the AI reply arrives")
        // ACKs of this round reach the edge (its round-trip histogram has
        // their samples): those of the AI reply, the last copies, at least.
        #expect(try await waitUntil { try system.edgeMetric("udpchat_edge_ack_round_trip_seconds_count") >= acksBefore + 2 })
        await alice.close()
        await bob.close()
    }
}

import ChatWire
import Foundation

/// What a fan-out run measured.
struct FanoutReport {
    var results: [ClientResult]
    var members: [String: Int]
    var start: UInt64
    var stopped: UInt64
    var before: [ProcessUsage]
    var after: [ProcessUsage]

    func print(options: BenchOptions, clients: Int, rooms: Int, duration: Double, warmup: Double, rate: Double?, size: Int) {
        let sent = results.reduce(0) { $0 + $1.sent }
        let confirmed = results.reduce(0) { $0 + $1.confirmed.count }
        let refused = results.reduce(0) { $0 + $1.refused }
        // Unanswered: timed out, or still waiting when the run ended.
        let unanswered = sent - confirmed - refused
        let refusal = results.first { !$0.lastRefusal.isEmpty }?.lastRefusal ?? ""
        // Every message known to exist (confirmed to its sender, or seen by
        // anyone) should reach every member of its room.
        var known: [String: Set<Int64>] = [:]
        for result in results {
            known[result.roomId, default: []].formUnion(result.confirmed)
            known[result.roomId, default: []].formUnion(result.received)
        }
        var lost = 0
        var lostConfirmed = 0
        for result in results {
            let messages = known[result.roomId] ?? []
            lost += messages.subtracting(result.received).count
        }
        var confirmedByRoom: [String: Set<Int64>] = [:]
        for result in results { confirmedByRoom[result.roomId, default: []].formUnion(result.confirmed) }
        for result in results { lostConfirmed += (confirmedByRoom[result.roomId] ?? []).subtracting(result.received).count }
        let deliveries = results.reduce(0) { $0 + $1.deliveries }
        let duplicates = results.reduce(0) { $0 + $1.duplicates }
        let lastDelivery = results.map(\.lastDelivery).max() ?? stopped
        let runSeconds = Double(stopped - start) / 1e9
        let span = Double(max(stopped, lastDelivery) - start) / 1e9
        let drainSeconds = Double(max(stopped, lastDelivery) - stopped) / 1e9
        var latencies: [UInt32] = []
        latencies.reserveCapacity(deliveries)
        for result in results { latencies += result.latencies }
        latencies.sort()
        let rows: [(String, String)] = [
            (
                "clients, rooms",
                "\(clients) in \(rooms) rooms (\(members.values.sorted().map(String.init).joined(separator: "/")) members), \(size)-byte messages, "
                    + (rate.map { "\(format($0)) messages/s" } ?? "closed loop")
            ),
            (
                "messages",
                "\(sent) sent, \(confirmed) confirmed, \(refused) refused\(refusal.isEmpty ? "" : " (\(refusal))"), \(unanswered) unanswered"
                    + " in \(format(runSeconds)) s" + (warmup > 0 ? " (after \(format(warmup)) s of warm-up)" : "")
            ),
            ("messages/s", format(Double(confirmed) / runSeconds)),
            ("deliveries", "\(deliveries) in \(format(span)) s (\(format(drainSeconds)) s after the last send)"),
            ("deliveries/s", format(Double(deliveries) / span)),
            ("fan-out p50 / p99 / max", "\(ms(latencies, 0.5)) / \(ms(latencies, 0.99)) / \(ms(latencies, 1.0)) ms"),
            ("lost", "\(lost) deliveries (\(lostConfirmed) of confirmed messages)"),
            ("duplicates", "\(duplicates)"),
        ]
        var json: JSONObject = [
            "bench": "fanout", "label": .string(options.label), "server": .string(options.target), "clients": .int(Int64(clients)),
            "rooms": .int(Int64(rooms)), "size": .int(Int64(size)), "rate": rate.map { JSONValue.double($0) } ?? .null,
            "seconds": .double(runSeconds), "sent": .int(Int64(sent)), "confirmed": .int(Int64(confirmed)),
            "refused": .int(Int64(refused)), "unanswered": .int(Int64(unanswered)), "warmup_seconds": .double(warmup),
            "messages_per_second": .double(Double(confirmed) / runSeconds),
            "deliveries": .int(Int64(deliveries)), "deliveries_per_second": .double(Double(deliveries) / span),
            "drain_seconds": .double(drainSeconds),
            "fanout_ms": [
                "p50": .double(msValue(latencies, 0.5)), "p99": .double(msValue(latencies, 0.99)), "max": .double(msValue(latencies, 1.0)),
            ],
            "lost": .int(Int64(lost)), "lost_confirmed": .int(Int64(lostConfirmed)), "duplicates": .int(Int64(duplicates)),
        ]
        json.append("servers", serverUsage(before: before, after: after))
        printReport(title: "fan-out", rows: rows + usageRows(before: before, after: after), json: json)
    }
}

func usageRows(before: [ProcessUsage], after: [ProcessUsage]) -> [(String, String)] {
    after.compactMap { usage in
        guard let start = before.first(where: { $0.pid == usage.pid }) else { return nil }
        return ("\(usage.name) (pid \(usage.pid))", "\(format(usage.cpuSeconds - start.cpuSeconds)) CPU s, RSS \(mb(usage.rssBytes)) MB")
    }
}

func serverUsage(before: [ProcessUsage], after: [ProcessUsage]) -> JSONValue {
    .array(
        after.compactMap { usage in
            guard let start = before.first(where: { $0.pid == usage.pid }) else { return nil }
            return [
                "name": .string(usage.name), "pid": .int(Int64(usage.pid)), "cpu_seconds": .double(usage.cpuSeconds - start.cpuSeconds),
                "rss_bytes": .int(Int64(usage.rssBytes)),
            ]
        })
}

func printReport(title: String, rows: [(String, String)], json: JSONObject) {
    let width = rows.map(\.0.count).max() ?? 0
    var text = "\(title)\n"
    for (name, value) in rows { text += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value + "\n" }
    text += String(decoding: JSONValue.object(json).serialized(), as: UTF8.self) + "\n"
    FileHandle.standardOutput.write(Data(text.utf8))
}

func msValue(_ sorted: [UInt32], _ quantile: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * quantile).rounded(.up)))
    return (Double(sorted[index]) / 1000 * 100).rounded() / 100
}

func ms(_ sorted: [UInt32], _ quantile: Double) -> String { sorted.isEmpty ? "-" : format(msValue(sorted, quantile)) }

func mb(_ bytes: Int) -> String { format(Double(bytes) / 1_048_576) }

func format(_ value: Double) -> String {
    if value >= 100 { return String(Int(value.rounded())) }
    return String((value * 100).rounded() / 100)
}

import ChatWire
import Metrics
import Prometheus

/// The process's metrics: swift-metrics instruments reported in the
/// Prometheus text format on `/metrics`.
public enum Observability {
    /// The registry `/metrics` reads. Bootstrap once, at start.
    public static let registry = PrometheusCollectorRegistry()

    /// Makes swift-metrics report to ``registry``, with histogram buckets
    /// suited to a chat server: from 100 µs (an RPC on one host) to 30 s (a
    /// model's reply).
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        MetricsSystem.bootstrap(factory)
    }

    /// The metrics in the Prometheus text format, each family with its
    /// `# HELP` line from ``MetricCatalog``.
    public static func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return withHelp(buffer)
    }

    /// Puts a `# HELP name text` line before each `# TYPE name ...` line
    /// whose family the catalog describes (instruments made through
    /// swift-metrics carry no help text of their own).
    static func withHelp(_ exposition: [UInt8], catalog: [String: String] = MetricCatalog.help) -> [UInt8] {
        let typePrefix = Array("# TYPE ".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(exposition.count + catalog.count * 64)
        var lineStart = exposition.startIndex
        while lineStart < exposition.endIndex {
            let lineEnd = exposition[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? exposition.endIndex
            let line = exposition[lineStart..<lineEnd]
            if line.starts(with: typePrefix) {
                let nameStart = line.startIndex + typePrefix.count
                let nameEnd = line[nameStart...].firstIndex(of: UInt8(ascii: " ")) ?? line.endIndex
                if let help = catalog[String(decoding: line[nameStart..<nameEnd], as: UTF8.self)] {
                    output.append(contentsOf: "# HELP ".utf8)
                    output.append(contentsOf: line[nameStart..<nameEnd])
                    output.append(UInt8(ascii: " "))
                    output.append(contentsOf: escapedHelp(help).utf8)
                    output.append(UInt8(ascii: "\n"))
                }
            }
            output.append(contentsOf: line)
            if lineEnd < exposition.endIndex { output.append(UInt8(ascii: "\n")) }
            lineStart = lineEnd < exposition.endIndex ? lineEnd + 1 : lineEnd
        }
        return output
    }

    /// Help text as the text format wants it: backslash and newline escaped.
    static func escapedHelp(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

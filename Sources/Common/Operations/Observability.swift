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

    /// The metrics in the Prometheus text format.
    public static func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

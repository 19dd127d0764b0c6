/// Retransmission timeout from measured round trips, RFC 6298 style:
/// smoothed RTT and its variance, RTO = SRTT + 4·RTTVAR, clamped. Samples
/// come only from copies sent once (Karn's rule is the caller's part: a
/// copy sent twice cannot tell which send its ACK answers).
public struct RTTEstimator: Sendable, Equatable {
    /// RFC 6298 §2: 1 s until the first measurement.
    public static let initialRTO: UInt64 = 1_000_000_000
    /// Implementation constant: near 200 ms, as TCP stacks use in practice,
    /// rather than RFC 6298's conservative 1 s.
    public static let minimumRTO: UInt64 = 200_000_000
    /// Implementation constant: backoff stops growing here. Far below
    /// TCP's 60 s: on a lossy path (a phone, Wi-Fi) most losses are random,
    /// not congestion, and a long backoff would make one unlucky copy hold
    /// back every later message of its room; a dead client costs one
    /// datagram per room every 2 s until the budget runs out.
    public static let maximumRTO: UInt64 = 2_000_000_000

    public private(set) var smoothed: UInt64?
    public private(set) var variance: UInt64 = 0

    public init() {}

    /// The current timeout for a first transmission.
    public var rto: UInt64 {
        guard let smoothed else { return Self.initialRTO }
        return min(Self.maximumRTO, max(Self.minimumRTO, smoothed + 4 * variance))
    }

    /// The timeout before transmission number `n + 1` of one copy:
    /// doubled each time (RFC 6298 §5.5), capped.
    public func rto(afterTransmissions n: Int) -> UInt64 {
        var value = rto
        for _ in 1..<max(1, n) {
            value = min(Self.maximumRTO, value * 2)
        }
        return value
    }

    /// Takes one round-trip sample (nanoseconds).
    public mutating func sample(_ rtt: UInt64) {
        guard let current = smoothed else {
            smoothed = rtt
            variance = rtt / 2
            return
        }
        let difference = current > rtt ? current - rtt : rtt - current
        variance = (3 * variance + difference) / 4
        smoothed = (7 * current + rtt) / 8
    }
}

/// Retransmission timeout from measured round trips: the smoothed RTT and
/// its variation of RFC 6298 §2 (the same as RFC 9002 §5.3), and a timeout
/// of SRTT + max(4·RTTVAR, 1 ms) as RFC 9002 §6.2.1 computes its probe
/// timeout, rather than RFC 6298's floor of one second.
///
/// Why no floor: RFC 6298 §2.4 sets 1 s to ride out delayed ACKs (up to
/// 500 ms in TCP) and coarse clocks. Our clients send an ACK the moment a
/// copy arrives, and the edge's clock has nanoseconds, so the measured
/// round trip already holds everything an ACK waits for; RFC 9002 keeps
/// only `kGranularity` (1 ms) for timer slack and adds the peer's declared
/// `max_ack_delay`, which here is zero. A spurious retransmission costs a
/// duplicate the client drops by its `msg_id`; a late one holds back every
/// later message of the room for that session.
///
/// Samples come only from copies sent once (Karn's rule: an ACK of a copy
/// sent twice cannot say which send it answers). After a timeout the
/// timeout doubles (RFC 6298 §5.5) and stays doubled for later copies
/// until a sample arrives (§5.7 and Karn's algorithm).
public struct RTTEstimator: Sendable, Equatable {
    /// RFC 6298 §2.1: 1 s until the first measurement.
    public static let initialRTO: UInt64 = 1_000_000_000
    /// RFC 9002 §6.1.2 `kGranularity`: the least variation allowed for.
    public static let granularity: UInt64 = 1_000_000
    /// Implementation constant: backoff stops growing here. Far below
    /// TCP's 60 s: on a lossy path (a phone, Wi-Fi) most losses are random,
    /// not congestion, and a long backoff would make one unlucky copy hold
    /// back every later message of its room; a dead client costs one
    /// datagram per room every 2 s until the retry budget runs out.
    public static let maximumRTO: UInt64 = 2_000_000_000

    public private(set) var smoothed: UInt64?
    public private(set) var variance: UInt64 = 0
    /// Timeouts since the last sample: each doubles the timeout.
    public private(set) var backoff = 0

    public init() {}

    /// The timeout for a copy sent now.
    public var rto: UInt64 {
        let base: UInt64
        if let smoothed {
            base = smoothed + max(4 * variance, Self.granularity)
        } else {
            base = Self.initialRTO
        }
        guard base < Self.maximumRTO >> min(backoff, 40) else { return Self.maximumRTO }
        return min(Self.maximumRTO, base << backoff)
    }

    /// A copy went unacknowledged for a whole timeout.
    public mutating func timedOut() {
        if rto < Self.maximumRTO { backoff += 1 }
    }

    /// Takes one round-trip sample (nanoseconds) and ends any backoff.
    public mutating func sample(_ rtt: UInt64) {
        backoff = 0
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

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
/// until an acknowledgement arrives, as RFC 9002 §6.2.1 resets its probe
/// timeout backoff on any ACK. (Waiting for a sample instead, as Karn's
/// algorithm does for TCP, starves on a lossy path: with a third of
/// datagrams lost each way half the copies need a retransmission and give
/// no sample, and the backoff climbed to its 2 s ceiling within a few dozen
/// messages in our simulation, holding each room back for seconds.)
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

    /// Takes what another estimator measured (the same source address
    /// lately) while this one has no round trip of its own, keeping its own
    /// backoff: RFC 9002 §6.2.2 lets a connection start from an earlier
    /// one's RTT, as Linux caches RTTs per destination for new TCP
    /// connections, rather than from the initial 1 s.
    public mutating func adopt(_ other: RTTEstimator) {
        guard smoothed == nil else { return }
        smoothed = other.smoothed
        variance = other.variance
    }

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

    /// An acknowledgement arrived: the path works, the backoff ends.
    public mutating func acknowledged() { backoff = 0 }

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

import ChatWire
import Testing
import TestSupport

/// Numbered vectors in the style of wireguard-go's replay_test.go.
@Suite struct ReplayWindowTests {
    static func nonce(_ timestamp: UInt64, _ random: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: timestamp >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: random >> UInt32(shift))) }
        return bytes
    }

    typealias Step = (number: Int, timestamp: UInt64, random: UInt32, verdict: ReplayWindow.Verdict)

    static func run(_ window: inout ReplayWindow, _ steps: [Step]) {
        for step in steps {
            let verdict = window.admit(nonce(step.timestamp, step.random))
            #expect(verdict == step.verdict, "vector \(step.number)")
        }
    }

    @Test func windowEdgesDuplicatesAndJumps() {
        var window = ReplayWindow(span: 100, capacity: 64)
        Self.run(
            &window,
            [
                (1, 1000, 1, .accepted),
                (2, 1000, 1, .duplicate),
                (3, 1000, 2, .accepted),  // same time, other random bits: a different packet
                (4, 999, 1, .accepted),  // late but inside the window
                (5, 1100, 1, .accepted),  // floor becomes 1100 - 100 - 1 = 999
                (6, 999, 2, .tooOld),  // exactly the floor
                (7, 1000, 3, .accepted),  // one above the floor
                (8, 1000, 1, .duplicate),  // still remembered
                (9, 5000, 1, .accepted),  // far-ahead jump: floor 4899
                (10, 1100, 1, .tooOld),
                (11, 4900, 1, .accepted),  // floor + 1
                (12, 4899, 1, .tooOld),  // floor
                (13, 5000, 1, .duplicate),
                (14, 4999, 7, .accepted),
            ])
        #expect(window.highest == 5000 && window.floor == 4899)
        // Everything below the floor was forgotten: memory follows the window, not the history.
        #expect(window.count == 3)
    }

    @Test func startsBelowTheSpanWithoutUnderflow() {
        var window = ReplayWindow(span: 1_000, capacity: 8)
        Self.run(&window, [(1, 1, 0, .accepted), (2, 0, 0, .tooOld), (3, 2, 0, .accepted), (4, 1, 0, .duplicate)])
        #expect(window.floor == 0)
    }

    @Test func nearTheLargestClientTimestamp() {
        let top = UInt64(Int64.max)  // client nonces keep the top bit clear
        var window = ReplayWindow(span: 10, capacity: 8)
        Self.run(
            &window,
            [
                (1, top - 5, 0, .accepted), (2, top, 0, .accepted), (3, top - 11, 0, .tooOld), (4, top - 10, 0, .accepted),
                (5, top, 0, .duplicate),
            ])
        #expect(window.floor == top - 11)
    }

    @Test func restoredWindowRejectsEverythingUpToTheSavedMark() {
        var window = ReplayWindow(floor: 5_000, span: 100, capacity: 8)
        Self.run(&window, [(1, 5_000, 9, .tooOld), (2, 4_000, 9, .tooOld), (3, 5_001, 9, .accepted), (4, 5_001, 9, .duplicate)])
    }

    @Test func atCapacityTheFloorRisesInsteadOfForgetting() {
        var window = ReplayWindow(span: 1_000_000, capacity: 4)
        Self.run(
            &window,
            [
                (1, 10, 0, .accepted), (2, 11, 0, .accepted), (3, 12, 0, .accepted), (4, 13, 0, .accepted),
                (5, 14, 0, .accepted),  // fifth nonce: the floor rises to 10 rather than forget it
                (6, 10, 0, .tooOld),  // so the oldest cannot be replayed
                (7, 11, 0, .duplicate), (8, 11, 1, .accepted),  // floor rises to 11
                (9, 11, 2, .tooOld),
            ])
        #expect(window.count <= 4)
        #expect(window.floor == 11)
    }

    /// Whatever the order and repetition, no nonce is accepted twice and
    /// memory stays within the capacity.
    @Test func neverAcceptsTheSameNonceTwice() {
        var generator = SplitMix64(seed: 7)
        var window = ReplayWindow(span: 500, capacity: 32)
        var accepted = Set<[UInt8]>()
        var sent: [[UInt8]] = []
        for step in 0..<20_000 {
            let nonce: [UInt8]
            if !sent.isEmpty && generator.next() % 3 == 0 {
                nonce = sent[Int(generator.next() % UInt64(sent.count))]
            } else {
                let time = UInt64(step) * 10 + generator.next() % 400
                nonce = Self.nonce(time, UInt32(truncatingIfNeeded: generator.next() % 4))
                sent.append(nonce)
            }
            if window.admit(nonce) == .accepted {
                #expect(!accepted.contains(nonce), "step \(step) accepted a replay")
                accepted.insert(nonce)
            }
            #expect(window.count <= 32)
        }
        #expect(accepted.count > 1_000)
    }

    @Test func compactingAnIdleWindowForgetsItsNoncesButAcceptsNoReplay() {
        var window = ReplayWindow(span: 1_000, capacity: 64)
        let sent = (1...20).map { Self.nonce(UInt64($0) * 10, 7) }
        for nonce in sent { #expect(window.admit(nonce) == .accepted) }
        #expect(window.count == 20)
        window.compact()
        #expect(window.count == 0 && window.floor == window.highest)
        for nonce in sent { #expect(window.admit(nonce) == .tooOld) }
        #expect(window.admit(Self.nonce(201, 1)) == .accepted)
        #expect(window.admit(Self.nonce(201, 1)) == .duplicate)
    }

    @Test func reorderedNoncesAreFoundWhereverTheyWereAccepted() {
        var window = ReplayWindow(span: 10_000, capacity: 512)
        // Accepted out of order, then each one again: every repeat is caught.
        let times: [UInt64] = [50, 10, 40, 20, 30, 60, 15, 55]
        for time in times { #expect(window.admit(Self.nonce(time, 1)) == .accepted, "\(time)") }
        for time in times { #expect(window.admit(Self.nonce(time, 1)) == .duplicate, "\(time) again") }
        #expect(window.admit(Self.nonce(15, 2)) == .accepted, "same time, other random bytes")
    }
}

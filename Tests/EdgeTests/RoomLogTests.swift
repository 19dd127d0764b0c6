import ChatWire
import Testing

@testable import udpchat_edge

@Suite struct RoomLogTests {
    static func entry(_ seq: UInt64, bytes: Int = 10) -> RoomLog.Entry {
        RoomLog.Entry(seq: seq, subject: .none, template: CopyTemplate(.error(message: String(repeating: "x", count: bytes))))
    }

    static func found(_ log: RoomLog, _ seq: UInt64) -> Bool {
        if case .entry(let entry) = log.lookup(seq) { return entry.seq == seq }
        return false
    }

    @Test func lookupsSayWhatIsHereWhatToReadAndWhatIsBeyondTheHead() {
        var log = RoomLog(roomId: "room")
        for seq in UInt64(5)...7 { log.insert(Self.entry(seq)) }
        log.advanceHead(to: 9)
        // number: seq, expected
        let vectors: [(UInt64, String)] = [(4, "missing"), (5, "entry"), (7, "entry"), (8, "missing"), (9, "missing"), (10, "beyond")]
        for (seq, expected) in vectors {
            let got: String
            switch log.lookup(seq) {
            case .entry: got = "entry"
            case .missing: got = "missing"
            case .forgotten: got = "forgotten"
            case .beyondHead: got = "beyond"
            }
            #expect(got == expected, "seq \(seq)")
        }
        log.forget(through: 4)
        if case .forgotten = log.lookup(3) {} else { Issue.record("3 was pruned from the store's log") }
        #expect(log.insert(Self.entry(5)) == false, "a duplicate changes nothing")
    }

    @Test func recentEventsAreBoundedByCountAndBytes() {
        var log = RoomLog(roomId: "room")
        let count = UInt64(RoomLog.recentCapacity)
        for seq in UInt64(1)...(count + 100) { log.insert(Self.entry(seq)) }
        #expect(log.recentCount == RoomLog.recentCapacity)
        #expect(!Self.found(log, 100) && Self.found(log, 101) && Self.found(log, count + 100))
        // Large events: the byte budget binds before the count.
        var large = RoomLog(roomId: "big")
        for seq in UInt64(1)...100 { large.insert(Self.entry(seq, bytes: 60_000)) }
        #expect(large.recentCount < 40 && Self.found(large, 100) && !Self.found(large, 1))
    }

    @Test func eventsReadForASessionFarBehindAreKeptApartAndBounded() {
        var log = RoomLog(roomId: "room")
        log.advanceHead(to: 100_000)
        for seq in UInt64(99_990)...100_000 { log.insert(Self.entry(seq)) }
        // A page far behind does not push out the recent events.
        for seq in UInt64(10)...265 { log.insert(Self.entry(seq)) }
        #expect(log.behindCount == 256 && log.recentCount == 11 && Self.found(log, 100) && Self.found(log, 100_000))
        // Behind the recent ones, at most `behindCapacity` events are kept.
        for seq in UInt64(1_000)...UInt64(1_000 + RoomLog.behindCapacity) { log.insert(Self.entry(seq)) }
        #expect(log.behindCount <= RoomLog.behindCapacity && Self.found(log, UInt64(1_000 + RoomLog.behindCapacity)))
        #expect(log.recentCount == 11)
    }

    @Test func aHeadFarAheadSweepsTheFewRecentEventsAtOnce() {
        var log = RoomLog(roomId: "room")
        for seq in UInt64(1)...10 { log.insert(Self.entry(seq)) }
        log.advanceHead(to: 50_000_000)
        #expect(log.recentCount == 0 && log.head == 50_000_000)
    }
}

import Foundation
import Ops
import Synchronization
import Testing

@Suite struct ThreadPoolTests {
    /// This thread's nice value, from /proc (field 19 of its stat line).
    static func niceness() -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int(fields[16]) : nil
    }

    /// Background threads yield the cores: their own nice value is raised,
    /// and the caller's is not (raising is allowed to anyone; the test
    /// starts from wherever its runner is).
    @Test func aPoolsThreadsRunAtTheNicenessAsked() async throws {
        let base = try #require(Self.niceness())
        let asked = Int32(min(19, base + 5))
        let pool = ThreadPool(name: "test-nice", threads: 2, maximumWaiting: 8, niceness: asked)
        let plain = ThreadPool(name: "test-plain", threads: 1, maximumWaiting: 8)
        defer {
            pool.stop()
            plain.stop()
        }
        let seen = await pool.map(Array(0..<8)) { _ in Self.niceness() }
        #expect(seen == Array(repeating: Int(asked), count: 8))
        #expect(await plain.run { Self.niceness() } == base)
        #expect(Self.niceness() == base)
    }

    /// Items come back in their order, and are shared among the threads:
    /// here each share waits until every share has started, which only
    /// threads running at once can do before the deadline.
    @Test func mapSharesItsItemsAmongTheThreadsAndKeepsTheirOrder() async throws {
        let pool = ThreadPool(name: "test-map", threads: 3, maximumWaiting: 100)
        defer { pool.stop() }
        let started = Mutex(Set<Int>())
        let deadline = Date().addingTimeInterval(10)
        let results = await pool.map(Array(0..<99)) { item -> (square: Int, allStarted: Bool) in
            started.withLock { _ = $0.insert(item / 33) }
            while started.withLock({ $0.count }) < 3 && Date() < deadline { usleep(100) }
            return (item * item, started.withLock { $0.count } == 3 && Date() < deadline)
        }
        #expect(results?.map(\.square) == (0..<99).map { $0 * $0 })
        // The first item of each share saw all three started in time.
        #expect(results.map { [$0[0], $0[33], $0[66]].allSatisfy(\.allStarted) } == true)
        #expect(pool.completed.value == 99)
    }
}

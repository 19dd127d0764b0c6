import ChatWire
import Foundation
import Testing
import TestSupport

/// The fuzzer's corpus (Tests/FuzzCorpus, grown by scripts/fuzz.sh) as a
/// regression test: every input that once mattered is run again.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus")

    @Test func everyCorpusInputKeepsTheDecodersInvariants() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
        #expect(files.count >= 10)
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            #expect(FuzzChecks.check(bytes) == nil, "\(file.lastPathComponent)")
        }
    }

    /// Random mutations of the corpus, deterministic by seed: a cheap stand-in
    /// for the fuzzer that runs on every test run.
    @Test func mutatedCorpusInputsKeepTheInvariants() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
        let inputs = try files.map { [UInt8](try Data(contentsOf: $0)) }
        var random = SplitMix64(seed: 2026)
        for round in 0..<20_000 {
            var bytes = inputs[Int(random.next() % UInt64(inputs.count))]
            for _ in 0..<(1 + Int(random.next() % 4)) {
                guard !bytes.isEmpty else { break }
                let index = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 4 {
                case 0: bytes[index] = UInt8(truncatingIfNeeded: random.next())
                case 1: bytes.remove(at: index)
                case 2: bytes.insert(Array("{}[]\",:\\u0".utf8)[Int(random.next() % 10)], at: index)
                default: bytes = Array(bytes[..<index])
                }
            }
            if let broken = FuzzChecks.check(bytes) {
                Issue.record("round \(round): \(broken)")
                return
            }
        }
    }
}

import Testing

@testable import ChatWire
@testable import Ops

/// The `# HELP` lines the exposition gains from the catalog.
struct ObservabilityTests {
    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func eachDescribedFamilyGetsItsHelpLineBeforeItsType() {
        let exposition = """
            # TYPE a_total counter
            a_total 3
            # TYPE b gauge
            b{x="1"} 2.0
            # TYPE c_seconds histogram
            c_seconds_count 0
            """
        let catalog = ["a_total": "What a counts.", "c_seconds": "Line one\nback\\slash"]
        #expect(
            Self.text(Observability.withHelp(Array(exposition.utf8), catalog: catalog)) == """
                # HELP a_total What a counts.
                # TYPE a_total counter
                a_total 3
                # TYPE b gauge
                b{x="1"} 2.0
                # HELP c_seconds Line one\\nback\\\\slash
                # TYPE c_seconds histogram
                c_seconds_count 0
                """)
    }

    @Test func aTrailingNewlineAndAnEmptyExpositionStayAsTheyWere() {
        #expect(
            Self.text(Observability.withHelp(Array("# TYPE a gauge\na 1\n".utf8), catalog: ["a": "A."]))
                == "# HELP a A.\n# TYPE a gauge\na 1\n")
        #expect(Observability.withHelp([], catalog: ["a": "A."]).isEmpty)
    }

    @Test func everyCatalogEntryNamesAMetricAndSaysSomething() {
        for (name, help) in MetricCatalog.help {
            #expect(name.wholeMatch(of: /udpchat_[a-z_]+/) != nil, "\(name)")
            #expect(help.count > 10 && help.hasSuffix("."), "\(name): \(help)")
        }
    }
}

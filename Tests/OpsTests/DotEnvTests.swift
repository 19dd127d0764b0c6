import ChatWire
import Foundation
import Ops
import Testing

@Suite struct DotEnvTests {
    @Test func readsTheCommonDotenvRules() throws {
        let text = """
            # comment
            SERVER_IP=0.0.0.0
              SERVER_PORT = 9999   # inline comment
            export DEBUG=true
            OPENAI_API_KEY="sk-abc#not-a-comment"
            SINGLE='literal \\n $HOME'
            DOUBLE="line1\\nline2 \\"q\\""
            EMPTY=
            HASH=a#b
            MULTI="first
            second"

            """
        let values = try DotEnv.parse(text)
        #expect(values["SERVER_IP"] == "0.0.0.0")
        #expect(values["SERVER_PORT"] == "9999")
        #expect(values["DEBUG"] == "true")
        #expect(values["OPENAI_API_KEY"] == "sk-abc#not-a-comment")
        #expect(values["SINGLE"] == "literal \\n $HOME")
        #expect(values["DOUBLE"] == "line1\nline2 \"q\"")
        #expect(values["EMPTY"] == "")
        #expect(values["HASH"] == "a#b")
        #expect(values["MULTI"] == "first\nsecond")
    }

    @Test func windowsLineEndings() throws {
        #expect(try DotEnv.parse("A=1\r\nB=2\r\n") == ["A": "1", "B": "2"])
    }

    @Test(arguments: [("JUST_A_NAME\n", 1), ("A=1\n=2\n", 2), ("A=\"open\n", 1), ("A='x' y\n", 1)])
    func badLinesAreErrorsWithTheirLineNumber(text: String, line: Int) {
        #expect { try DotEnv.parse(text) } throws: { ($0 as? DotEnv.ParseError)?.line == line }
    }

    /// Each number's default and range are spelled once, in the catalogue:
    /// the default is one of its values, documentation shows it, and an
    /// unset setting reads as it.
    @Test func everyNumbersDefaultIsInItsRangeAndIsWhatAnUnsetSettingReads() throws {
        let unset = SettingsReader(environment: [:])
        var numbers = 0
        for setting in Setting.all {
            switch setting.rule {
            case .integer(let value, let range)?:
                numbers += 1
                #expect(range.contains(value) && setting.defaultText.hasPrefix(String(value)), "\(setting.name)")
                #expect(try unset.int(setting) == value)
                #expect(throws: ChatError.self) { try SettingsReader(environment: [setting.name: String(range.upperBound + 1)]).int(setting) }
            case .decimal(let value, let range)?:
                numbers += 1
                #expect(range.contains(value) && setting.defaultText == String(value), "\(setting.name)")
                #expect(try unset.double(setting) == value)
            case .flag(let value)?:
                #expect(try unset.bool(setting) == value && setting.defaultText == String(value))
            case nil:
                break
            }
        }
        #expect(numbers >= 35, "\(numbers) number settings")
    }

    @Test func settingsRefuseValuesThatDoNotParse() {
        let settings = SettingsReader(environment: ["SERVER_PORT": "99999", "DEBUG": "maybe"])
        #expect { try settings.int(.serverPort) } throws: { ($0 as? ChatError)?.code == .configuration }
        #expect { try settings.bool(.debug) } throws: { ($0 as? ChatError)?.code == .configuration }
    }

    @Test func environmentWinsOverTheFileAndDefaultsFillTheRest() throws {
        let settings = SettingsReader(environment: ["DATA_DIR": "/srv/chat"], file: ["DATA_DIR": "/ignored", "LOG_LEVEL": "warning"])
        let common = try CommonSettings(settings)
        #expect(common.dataDir == "/srv/chat")
        #expect(common.dbPath == "/srv/chat/udpchat.db")
        #expect(common.storeEndpoint == "ipc:///srv/chat/run/store.sock")
        #expect(common.logLevel == "warning")
        #expect(try CommonSettings(SettingsReader(environment: ["DEBUG": "Y"])).logLevel == "debug")
    }

    @Test func ipcPathsLongerThanAUnixSocketPathAreRefused() {
        let long = "/tmp/" + String(repeating: "d", count: 120)
        #expect { try CommonSettings(SettingsReader(environment: ["RUN_DIR": long])) } throws: { ($0 as? ChatError)?.code == .configuration }
    }

    /// `.env.sample` documents every setting the programs read.
    @Test func envSampleListsEverySetting() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let sample = try String(contentsOf: root.appendingPathComponent(".env.sample"), encoding: .utf8)
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        for setting in Setting.all {
            #expect(sample.contains("\(setting.name)="), "\(setting.name) missing from .env.sample")
            #expect(readme.contains("`\(setting.name)`"), "\(setting.name) missing from README.md")
        }
        // And the sample parses by the rules the programs use.
        #expect(throws: Never.self) { try DotEnv.parse(sample) }
    }
}

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

    /// Each number's default and range are spelled once, in the catalogue,
    /// and every reader follows them: unset reads the default, a value
    /// just outside the range is refused as a configuration error naming
    /// the setting, the bounds themselves are taken.
    @Test func everyNumberSettingReadsItsDefaultAndKeepsToItsRange() throws {
        let unset = SettingsReader(environment: [:])
        func refused(_ setting: Setting, _ text: String, _ read: (SettingsReader) throws -> Any) -> Bool {
            do {
                _ = try read(SettingsReader(environment: [setting.name: text]))
                return false
            } catch let error as ChatError {
                return error.code == .configuration && error.message.hasPrefix("\(setting.name)=\(text)")
            } catch {
                return false
            }
        }
        var numbers = 0
        for setting in Setting.all {
            switch setting.rule {
            case .integer(let value, let range)?:
                numbers += 1
                // METRICS_PORT is the original's name for EDGE_METRICS_PORT: unset, it stands for nothing.
                #expect(setting == .metricsPort || setting.defaultText.hasPrefix(String(value)), "\(setting.name)")
                #expect(try unset.int(setting) == value && range.contains(value), "\(setting.name)")
                for outside in [range.lowerBound - 1, range.upperBound + 1] {
                    #expect(refused(setting, String(outside)) { try $0.int(setting) }, "\(setting.name)=\(outside)")
                }
                for bound in [range.lowerBound, range.upperBound] {
                    #expect(try SettingsReader(environment: [setting.name: String(bound)]).int(setting) == bound)
                }
            case .decimal(let value, let range)?:
                numbers += 1
                #expect(try unset.double(setting) == value && range.contains(value) && setting.defaultText == String(value))
                for outside in [range.lowerBound - 0.01, range.upperBound + 0.01] {
                    #expect(refused(setting, String(outside)) { try $0.double(setting) }, "\(setting.name)=\(outside)")
                }
            case .flag(let value)?:
                #expect(try unset.bool(setting) == value && setting.defaultText == String(value))
                #expect(refused(setting, "maybe") { try $0.bool(setting) })
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

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

    @Test func settingsRefuseValuesThatDoNotParse() {
        let settings = SettingsReader(environment: ["SERVER_PORT": "99999", "DEBUG": "maybe"])
        #expect { try settings.int(.serverPort, default: 9999, range: 0...65535) } throws: { ($0 as? ChatError)?.code == .configuration }
        #expect { try settings.bool(.debug, default: false) } throws: { ($0 as? ChatError)?.code == .configuration }
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

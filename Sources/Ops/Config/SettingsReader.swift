import ChatWire
import Configuration
import Foundation

/// Settings that more than one program reads as a duration.
extension SettingsReader {
    /// `AI_HEARTBEAT_MS`: the pace of the store's and the workers' heartbeats.
    public func aiHeartbeat() throws -> Duration { .milliseconds(try int(.aiHeartbeat)) }
}

/// The settings as the programs see them: environment variables first,
/// then the environment file, then defaults. Values are checked: a value
/// that does not parse is an error naming the variable, never a silent
/// fallback to the default.
public struct SettingsReader: Sendable {
    private let reader: ConfigReader

    /// Reads the process environment and the environment file it names
    /// (`UDPCHAT_ENV_FILE`, else `./.env` when present).
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SettingsReader {
        var fileValues: [String: String] = [:]
        let explicit = environment[Setting.envFile.name].flatMap { $0.isEmpty ? nil : $0 }
        let path = explicit ?? ".env"
        if FileManager.default.fileExists(atPath: path) {
            // FileHandle rather than String(contentsOfFile:), which refuses
            // devices such as /dev/null ("no file").
            let data: Data
            do {
                guard let handle = FileHandle(forReadingAtPath: path) else { throw ChatError.configuration("permission denied") }
                defer { try? handle.close() }
                data = try handle.readToEnd() ?? Data()
            } catch {
                throw ChatError.configuration("cannot read the environment file \(path): \(error)")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ChatError.configuration("the environment file \(path) is not UTF-8")
            }
            do {
                fileValues = try DotEnv.parse(text)
            } catch {
                throw ChatError.configuration("environment file \(path), \(error)")
            }
        } else if let explicit {
            throw ChatError.configuration("\(Setting.envFile.name)=\(explicit): no such file")
        }
        return SettingsReader(environment: environment, file: fileValues)
    }

    /// Settings from explicit dictionaries (tests).
    public init(environment: [String: String], file: [String: String] = [:]) {
        reader = ConfigReader(providers: [
            EnvironmentVariablesProvider(environmentVariables: environment),
            EnvironmentVariablesProvider(environmentVariables: file),
        ])
    }

    /// The raw value, or nil when unset or empty.
    public func raw(_ setting: Setting) -> String? {
        let secret = setting == .openAIKey || setting == .azureAPIKey
        guard let value = reader.string(forKey: setting.key, isSecret: secret), !value.isEmpty else {
            return nil
        }
        return value
    }

    public func string(_ setting: Setting, default value: String) -> String { raw(setting) ?? value }

    /// A number setting, checked against its rule. A setting without one
    /// is a mistake in the catalogue, which the tests that start every
    /// program find.
    public func int(_ setting: Setting) throws -> Int {
        guard case .integer(let value, let range) = setting.rule else { preconditionFailure("\(setting.name) is not a whole number") }
        return try int(setting, default: value, range: range)
    }

    public func double(_ setting: Setting) throws -> Double {
        guard case .decimal(let value, let range) = setting.rule else { preconditionFailure("\(setting.name) is not a number") }
        return try double(setting, default: value, range: range)
    }

    public func bool(_ setting: Setting) throws -> Bool {
        guard case .flag(let value) = setting.rule else { preconditionFailure("\(setting.name) is not true or false") }
        return try bool(setting, default: value)
    }

    private func int(_ setting: Setting, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = raw(setting) else { return value }
        guard let number = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
            throw ChatError.configuration("\(setting.name)=\(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    private func double(_ setting: Setting, default value: Double, range: ClosedRange<Double>) throws -> Double {
        guard let text = raw(setting) else { return value }
        guard let number = Double(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
            throw ChatError.configuration("\(setting.name)=\(text): expected a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    private func bool(_ setting: Setting, default value: Bool) throws -> Bool {
        guard let text = raw(setting) else { return value }
        switch text.lowercased() {
        case "true", "1", "t", "yes", "y", "on": return true
        case "false", "0", "f", "no", "n", "off": return false
        default: throw ChatError.configuration("\(setting.name)=\(text): expected true or false")
        }
    }
}

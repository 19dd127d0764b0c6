import ChatWire
import Foundation

/// A stand-in model API and the requests it received.
struct MockProvider: Sendable {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/mock_provider.py")

    let process: ProgramProcess
    let port: Int
    let log: URL

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Every request so far: `{"path", "headers", "body"}`.
    func requests() -> [JSONObject] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue }
    }
}

/// ``runToCompletion(_:_:environment:directory:input:)`` on a thread of its
/// own, so a long command does not hold one of the few threads every
/// concurrently running test shares.
func runDetached(
    _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil, input: String? = nil
) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(
                with: Result { try runToCompletion(executable, arguments, environment: environment, directory: directory, input: input) })
        }
    }
}

/// Runs a command to its end; returns its exit status and its stdout and stderr together.
func runToCompletion(
    _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil, input: String? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let stdin = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

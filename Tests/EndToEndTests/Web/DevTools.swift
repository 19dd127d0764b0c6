import ChatWire
import Foundation
import HummingbirdWSClient
import Logging

/// A client of the Chrome DevTools protocol over its WebSocket: commands
/// go out with an id, and each call waits for the answer with that id.
/// Events are not kept (the tests ask the page for its state instead).
final class DevTools: Sendable {
    private let outbox: AsyncStream<String>.Continuation
    private let calls = MutexBox<(next: Int, waiting: [Int: CheckedContinuation<JSONValue, any Error>])>((1, [:]))
    private let connection: Task<Void, any Error>

    init(url: String) {
        let (stream, outbox) = AsyncStream<String>.makeStream()
        self.outbox = outbox
        let calls = calls
        connection = Task {
            var ending = "the DevTools connection closed"
            defer { DevTools.failAll(calls, HarnessError(ending)) }
            do {
                try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 24), logger: Logger(label: "devtools"))
                {
                    inbound, outbound, _ in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { for await text in stream { try await outbound.write(.text(text)) } }
                        for try await message in inbound.messages(maxSize: 1 << 26) {
                            guard case .text(let text) = message, let answer = try? JSONParser.parse(text).objectValue,
                                let id = answer["id"]?.intValue
                            else { continue }
                            let waiter = calls.mutate { $0.waiting.removeValue(forKey: Int(id)) }
                            if let error = answer["error"] {
                                waiter?.resume(throwing: HarnessError("DevTools: \(error.jsonText)"))
                            } else {
                                waiter?.resume(returning: answer["result"] ?? .null)
                            }
                        }
                        group.cancelAll()
                    }
                }
            } catch {
                ending = "the DevTools connection failed: \(error)"
                throw error
            }
        }
    }

    private static func failAll(
        _ calls: MutexBox<(next: Int, waiting: [Int: CheckedContinuation<JSONValue, any Error>])>, _ error: any Error
    ) {
        for waiter in calls.mutate({ state in
            defer { state.waiting = [:] }; return state.waiting.values
        }) { waiter.resume(throwing: error) }
    }

    /// Runs `method` (in the page `session` when given) and returns its result,
    /// failing after `timeout`.
    func call(_ method: String, _ params: JSONObject = [:], session: String? = nil, timeout: Duration = .seconds(30)) async throws
        -> JSONValue
    {
        var request: JSONObject = ["method": .string(method), "params": .object(params)]
        if let session { request.append("sessionId", .string(session)) }
        let id = calls.mutate { state in
            defer { state.next += 1 }
            return state.next
        }
        request.append("id", .int(Int64(id)))
        let text = JSONValue.object(request).jsonText
        let deadline = Task { [calls] in
            try await Task.sleep(for: timeout)
            calls.mutate { $0.waiting.removeValue(forKey: id) }?.resume(
                throwing: HarnessError("DevTools: no answer to \(method) within \(timeout)"))
        }
        defer { deadline.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            calls.mutate { $0.waiting[id] = continuation }
            outbox.yield(text)
        }
    }

    func close() {
        outbox.finish()
        connection.cancel()
    }
}

/// Debian's Chromium, headless, started for one test and stopped by PID.
final class Chromium: Sendable {
    let process: ProgramProcess
    let devtools: DevTools
    let profile: URL

    static let executable = URL(fileURLWithPath: "/usr/bin/chromium")

    init(in directory: URL) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable.path) else {
            throw HarnessError("\(Self.executable.path) is missing: scripts/test.sh installs Debian's chromium")
        }
        profile = directory.appendingPathComponent("chromium-profile-\(UInt32.random(in: 0...UInt32.max))")
        let process = try ProgramProcess(
            name: "chromium", executable: Self.executable,
            arguments: [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
                "--user-data-dir=\(profile.path)",
                "--window-size=1100,760", "about:blank",
            ],
            environment: ["PATH": "/usr/bin:/bin", "HOME": directory.path], directory: directory)
        // Chromium says on stderr where its DevTools listen.
        var url: String?
        _ = await waitUntil(within: .seconds(30)) {
            url = process.log().split(separator: "\n").first { $0.hasPrefix("DevTools listening on ") }.map {
                String($0.dropFirst("DevTools listening on ".count))
            }
            return url != nil || !process.isRunning
        }
        guard let url else {
            await process.stop()
            throw HarnessError("chromium did not start its DevTools: \(process.log().suffix(2000))")
        }
        self.process = process
        devtools = DevTools(url: url)
    }

    /// A new tab at `url` in a browser context of its own (its own storage,
    /// as another person's browser would have).
    func open(_ url: String) async throws -> BrowserPage {
        let context = try await devtools.call("Target.createBrowserContext")["browserContextId"]?.stringValue ?? ""
        let target = try await devtools.call("Target.createTarget", ["url": "about:blank", "browserContextId": .string(context)])
        let targetId = target["targetId"]?.stringValue ?? ""
        let attached = try await devtools.call("Target.attachToTarget", ["targetId": .string(targetId), "flatten": true])
        let page = BrowserPage(devtools: devtools, session: attached["sessionId"]?.stringValue ?? "")
        _ = try await page.call("Page.enable")
        _ = try await page.call("Page.navigate", ["url": .string(url)])
        return page
    }

    func close() async {
        devtools.close()
        await process.stop()
        try? FileManager.default.removeItem(at: profile)
    }
}

/// One tab.
struct BrowserPage: Sendable {
    let devtools: DevTools
    let session: String

    func call(_ method: String, _ params: JSONObject = [:]) async throws -> JSONValue {
        try await devtools.call(method, params, session: session)
    }

    /// The value of `expression` in the page (a promise is awaited).
    @discardableResult
    func evaluate(_ expression: String) async throws -> JSONValue {
        let answer = try await call(
            "Runtime.evaluate", ["expression": .string(expression), "awaitPromise": true, "returnByValue": true])
        if let details = answer["exceptionDetails"] { throw HarnessError("the page threw: \(details.jsonText)") }
        return answer["result"]?["value"] ?? .null
    }

    /// Waits until `condition` (a JavaScript expression) is true in the
    /// page, at most `timeout`; across a reload, it asks again.
    func waitFor(_ condition: String, timeout: Duration = .seconds(20)) async throws {
        var last = ""
        let held = await waitUntil(within: timeout) {
            do {
                return try await evaluate("Boolean(\(condition))") == .bool(true)
            } catch {
                last = "\(error)"
                return false
            }
        }
        if !held {
            let state = (try? await evaluate("document.getElementById('state')?.textContent ?? ''"))?.stringValue ?? "?"
            throw HarnessError("the page never showed `\(condition)` (it says '\(state)') \(last)")
        }
    }

    /// The texts of the elements `selector` matches, in document order.
    func texts(_ selector: String) async throws -> [String] {
        let value = try await evaluate("[...document.querySelectorAll(\(Self.quoted(selector)))].map(e => e.textContent)")
        return value.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// Types `text` into the field `id` and submits its form.
    func submit(_ id: String, _ text: String, form: String) async throws {
        try await evaluate(
            "document.getElementById(\(Self.quoted(id))).value = \(Self.quoted(text)); "
                + "document.getElementById(\(Self.quoted(form))).requestSubmit(); true")
    }

    func click(_ selector: String) async throws {
        try await evaluate("document.querySelector(\(Self.quoted(selector))).click(); true")
    }

    /// Types `text` where the focus is, as a keyboard would.
    func type(_ text: String) async throws {
        _ = try await call("Input.insertText", ["text": .string(text)])
    }

    /// Presses Enter where the focus is.
    func pressEnter() async throws {
        for type in ["keyDown", "keyUp"] {
            var event: JSONObject = ["type": .string(type), "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13]
            if type == "keyDown" { event.append("text", "\r") }
            _ = try await call("Input.dispatchKeyEvent", event)
        }
    }

    func reload() async throws {
        _ = try await call("Page.reload")
    }

    /// A PNG of what the tab shows.
    func screenshot() async throws -> Data {
        let answer = try await call("Page.captureScreenshot", ["format": "png"])
        guard let data = answer["data"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) else { throw HarnessError("no screenshot") }
        return data
    }

    /// `text` as a JavaScript string literal.
    static func quoted(_ text: String) -> String { JSONValue.string(text).jsonText }
}

extension JSONValue {
    /// The member `key` of an object; nil for anything else.
    fileprivate subscript(key: String) -> JSONValue? { objectValue?[key] }
}

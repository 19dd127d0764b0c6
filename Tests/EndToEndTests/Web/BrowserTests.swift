import ChatWire
import Foundation
import Testing

/// The web page in a real browser: Debian's Chromium, headless, driven
/// over the DevTools protocol, against udpchat-web and the real programs.
/// Each person has a browser context of their own (their own storage).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BrowserTests {
    /// A system with udpchat-web, an AI worker on a stand-in model, and a
    /// browser; always stopped by PID.
    static func withBrowser(
        web settings: [String: String] = [:], _ body: (TestSystem, Chromium, String, MockProvider) async throws -> Void
    ) async throws {
        try await withSystem { system in
            let provider = try await system.startProvider("ok", reply: "Sounds good to me")
            try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1", "OPENAI_API_KEY": "sk-test"])
            let (_, url) = try await system.startWeb(settings)
            let browser = try await Chromium(in: system.root)
            do {
                try await body(system, browser, url, provider)
            } catch {
                print(browser.process.log().suffix(4000))
                await browser.close()
                throw error
            }
            await browser.close()
        }
    }

    /// Opens the page and logs in as `email`; waits for the chat.
    static func logIn(_ browser: Chromium, _ url: String, _ email: String) async throws -> BrowserPage {
        let page = try await browser.open(url)
        try await page.waitFor("!document.getElementById('login').hidden")
        try await page.submit("email", email, form: "login-form")
        try await page.waitFor("!document.getElementById('chat').hidden")
        return page
    }

    static func messages(_ page: BrowserPage) async throws -> [String] { try await page.texts("#messages .content") }

    @Test func twoPeopleChatBothWaysAndSeeTheAIReply() async throws {
        try await Self.withBrowser { system, browser, url, provider in
            let alice = try await Self.logIn(browser, url, "alice@example.com")
            #expect(try await alice.texts("#me") == ["alice"])
            try await alice.submit("room-name", "Lounge", form: "create-form")
            try await alice.waitFor("document.getElementById('room-title').textContent === 'Lounge'")

            let bob = try await Self.logIn(browser, url, "bob@example.com")
            try await bob.waitFor("[...document.querySelectorAll('#rooms button')].some(b => b.textContent === 'Lounge')")
            try await bob.evaluate("[...document.querySelectorAll('#rooms button')].find(b => b.textContent === 'Lounge').click(); true")
            try await bob.waitFor("document.getElementById('room-title').textContent === 'Lounge'")
            try await alice.waitFor("[...document.querySelectorAll('#members li')].some(e => e.textContent === 'bob')")

            // Markup in a message is text, on both sides.
            let hello = "hello <b>bob</b> & <img src=x onerror=alert(1)>"
            try await alice.submit("draft", hello, form: "composer")
            try await bob.waitFor(
                "[...document.querySelectorAll('#messages .content')].some(e => e.textContent === \(BrowserPage.quoted(hello)))")
            #expect(try await bob.evaluate("document.querySelectorAll('#messages img, #messages b').length") == .int(0))
            try await bob.submit("draft", "hi alice", form: "composer")
            try await alice.waitFor("[...document.querySelectorAll('#messages .content')].some(e => e.textContent === 'hi alice')")
            // Names beside each message, in the order the store committed them.
            #expect(try await alice.texts("#messages .name") == ["alice", "bob"])
            #expect(try await Self.messages(alice) == [hello, "hi alice"])
            #expect(try await Self.messages(bob) == [hello, "hi alice"])
            // Each with the time it was written (the store's, in seconds).
            let timed =
                "[...document.querySelectorAll('#messages time')].every(t => Math.abs(Date.parse(t.dateTime) - Date.now()) < 300000)"
            #expect(try await alice.evaluate(timed) == .bool(true))
            #expect(try await alice.evaluate("document.querySelectorAll('#messages time').length") == 2)

            // The AI bot writes bob's next message; both see it, as bob's.
            try await bob.evaluate("document.querySelector('input[name=mode][value=bot]').checked = true; true")
            try await bob.evaluate("document.getElementById('composer').requestSubmit(); true")
            for page in [alice, bob] {
                try await page.waitFor(
                    "[...document.querySelectorAll('#messages .content')].some(e => e.textContent === 'Sounds good to me')")
            }
            #expect(try await alice.texts("#messages .name") == ["alice", "bob", "bob"])
            let stored = try await system.storedMessages()
            #expect(stored.suffix(3) == [hello, "hi alice", "Sounds good to me"])

            // The AI helper rewrites alice's draft: the model is given it.
            try await alice.evaluate("document.querySelector('input[name=mode][value=helper]').checked = true; true")
            try await alice.submit("draft", "pls come 2 party", form: "composer")
            try await bob.waitFor("document.querySelectorAll('#messages .content').length === 4")
            #expect(try await bob.texts("#messages .name").last == "alice")
            let task = try #require(provider.requests().last?["body"]?.objectValue?["messages"]?.arrayValue?.last?.objectValue)
            #expect(task["content"]?.stringValue?.contains("pls come 2 party") == true)

            if let path = ProcessInfo.processInfo.environment["UDPCHAT_SCREENSHOT"] {
                try await alice.screenshot().write(to: URL(fileURLWithPath: path))
            }

            // bob leaves: his page closes the room, and alice's members drop him.
            try await bob.click("#leave")
            try await bob.waitFor("document.getElementById('room-title').textContent === 'Choose a room'")
            try await alice.waitFor("![...document.querySelectorAll('#members li')].some(e => e.textContent === 'bob')")
            #expect(try await alice.texts("#members li") == ["alice"])
        }
    }

    /// An account with a password: the page asks for it, says when it is
    /// wrong, and logs in with the right one.
    @Test func aPasswordIsAskedForWhenTheAccountHasOne() async throws {
        try await Self.withBrowser { system, browser, url, _ in
            let set = try await system.run("udpchat-store", ["user", "set-password", "erin@example.com"], input: "correct horse battery\n")
            #expect(set.status == 0, "\(set.output)")
            let erin = try await browser.open(url)
            try await erin.waitFor("!document.getElementById('login').hidden")
            #expect(try await erin.evaluate("document.getElementById('password-row').hidden") == .bool(true))
            try await erin.submit("email", "erin@example.com", form: "login-form")
            try await erin.waitFor("!document.getElementById('password-row').hidden")
            #expect(try await erin.texts("#login-message") == ["Please type your password to continue"])
            try await erin.submit("password", "wrong horse", form: "login-form")
            try await erin.waitFor("document.getElementById('login-message').textContent === 'Incorrect password'")
            #expect(try await erin.evaluate("document.getElementById('chat').hidden") == .bool(true))
            try await erin.submit("password", "correct horse battery", form: "login-form")
            try await erin.waitFor("!document.getElementById('chat').hidden && document.getElementById('me').textContent === 'erin'")
        }
    }

    /// On a phone-sized screen, from the keyboard alone: every field has a
    /// label, Enter logs in, makes a room and sends, and the panels stack
    /// in one column with nothing wider than the screen.
    @Test func thePageWorksFromTheKeyboardOnAPhoneSizedScreen() async throws {
        try await Self.withBrowser { _, browser, url, _ in
            let page = try await browser.open(url)
            _ = try await page.call(
                "Emulation.setDeviceMetricsOverride", ["width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true])
            try await page.waitFor("!document.getElementById('login').hidden")
            let unlabelled = try await page.evaluate(
                "[...document.querySelectorAll('input, textarea')].filter(e => e.labels.length === 0).map(e => e.id || e.name)")
            #expect(unlabelled == .array([]))

            try await page.evaluate("document.getElementById('email').focus(); true")
            try await page.type("kim@example.com")
            try await page.pressEnter()
            try await page.waitFor("!document.getElementById('chat').hidden")
            try await page.evaluate("document.getElementById('room-name').focus(); true")
            try await page.type("Pocket")
            try await page.pressEnter()
            try await page.waitFor("document.getElementById('room-title').textContent === 'Pocket'")
            // Opening the room puts the focus in the draft.
            #expect(try await page.evaluate("document.activeElement.id") == "draft")
            try await page.type("sent with Enter")
            try await page.pressEnter()
            try await page.waitFor("[...document.querySelectorAll('#messages .content')].some(e => e.textContent === 'sent with Enter')")
            #expect(try await page.evaluate("document.getElementById('draft').value") == "")

            #expect(try await page.evaluate("getComputedStyle(document.getElementById('chat')).gridTemplateColumns.split(' ').length") == 1)
            #expect(try await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth") == .bool(true))
        }
    }

    /// A page left alone stays connected: its STATUS every 10 s keeps the
    /// bridge (closing after 12 s of nothing) and the session from idling out.
    @Test func theKeepAliveHoldsAnIdlePageOpen() async throws {
        try await Self.withBrowser(web: ["INACTIVITY_TIMEOUT_MS": "12000"]) { system, browser, url, _ in
            _ = try await Self.logIn(browser, url, "lee@example.com")
            let web = try #require(system.extraProcesses.value.first { $0.name == "web" })
            let sent = try WebBridgeTests.metric(web, "udpchat_web_frames_total", ["direction=\"to_edge\""])
            // Two keep-alives, 20 s: long past the bridge's 12 s.
            #expect(
                await waitUntil(within: .seconds(40)) {
                    (try? WebBridgeTests.metric(web, "udpchat_web_frames_total", ["direction=\"to_edge\""])) ?? 0 >= sent + 2
                })
            #expect(try WebBridgeTests.metric(web, "udpchat_web_closed_total", ["reason=\"idle\""]) == 0)
            #expect(try WebBridgeTests.metric(web, "udpchat_web_connections_total", ["result=\"accepted\""]) == 1)
        }
    }

    /// A reload starts a new handshake; MERGE_SESSION brings the login
    /// and the open room back, with its history.
    @Test func aReloadKeepsTheSessionAndTheRoom() async throws {
        try await Self.withBrowser { _, browser, url, _ in
            let carol = try await Self.logIn(browser, url, "carol@example.com")
            try await carol.submit("room-name", "Kitchen", form: "create-form")
            try await carol.waitFor("document.getElementById('room-title').textContent === 'Kitchen'")
            try await carol.submit("draft", "before the reload", form: "composer")
            try await carol.waitFor("document.querySelectorAll('#messages .content').length === 1")
            let session = try await carol.evaluate("localStorage.getItem('session-id')").stringValue

            try await carol.reload()
            try await carol.waitFor("localStorage.getItem('session-id') !== \(BrowserPage.quoted(session ?? ""))")
            try await carol.waitFor("!document.getElementById('chat').hidden && document.getElementById('me').textContent === 'carol'")
            try await carol.waitFor("document.getElementById('room-title').textContent === 'Kitchen'")
            try await carol.waitFor("[...document.querySelectorAll('#messages .content')].some(e => e.textContent === 'before the reload')")
            #expect(try await carol.evaluate("document.getElementById('login').hidden") == .bool(true))
        }
    }

    /// A pinned fingerprint that is not the server's stops the page before
    /// it sends anything and says so; trusting the new key goes on.
    @Test func aChangedServerKeyShowsTheWarning() async throws {
        try await Self.withBrowser { system, browser, url, _ in
            let dave = try await Self.logIn(browser, url, "dave@example.com")
            let fingerprint = try #require(try await dave.evaluate("localStorage.getItem('server-fingerprint')").stringValue)
            #expect(try await system.run("udpchat-keys", ["show"]).output.contains(fingerprint))
            #expect(try await dave.texts("#fingerprint") == [fingerprint])

            let session = try await dave.evaluate("localStorage.getItem('session-id')")
            let other = String(repeating: "ab", count: 32)
            try await dave.evaluate("localStorage.setItem('server-fingerprint', '\(other)'); true")
            try await dave.reload()
            try await dave.waitFor("!document.getElementById('key-warning').hidden")
            #expect(try await dave.texts("#pinned-fingerprint") == [other])
            #expect(try await dave.texts("#offered-fingerprint") == [fingerprint])
            #expect(
                try await dave.evaluate("document.getElementById('chat').hidden && document.getElementById('login').hidden") == .bool(true))
            // Nothing was adopted: the pin and the stored session are the ones before.
            #expect(try await dave.evaluate("localStorage.getItem('server-fingerprint')") == .string(other))
            #expect(try await dave.evaluate("localStorage.getItem('session-id')") == session)

            // Trusting the key goes on, logged out: the old session's key
            // is not handed to a server with another key.
            try await dave.click("#trust-key")
            try await dave.waitFor("!document.getElementById('login').hidden")
            #expect(try await dave.evaluate("localStorage.getItem('server-fingerprint')") == .string(fingerprint))
            #expect(try await dave.evaluate("document.getElementById('key-warning').hidden") == .bool(true))
            #expect(try await dave.evaluate("localStorage.getItem('session-id') !== \(session.jsonText)") == .bool(true))
            try await dave.submit("email", "dave@example.com", form: "login-form")
            try await dave.waitFor("!document.getElementById('chat').hidden && document.getElementById('me').textContent === 'dave'")
        }
    }
}

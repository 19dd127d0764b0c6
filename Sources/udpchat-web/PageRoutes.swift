import HTTPTypes
import Hummingbird
import NIOCore

/// The web page: a few files built into the program (no build step, no
/// download), served with headers that keep them to this origin.
enum PageRoutes {
    struct File: Sendable {
        var contentType: String
        var body: ByteBuffer
    }

    /// Every file of the page by its path.
    static let files: [String: File] = [
        "/": File(contentType: "text/html; charset=utf-8", body: ByteBuffer(bytes: PackageResources.index_html)),
        "/style.css": File(contentType: "text/css; charset=utf-8", body: ByteBuffer(bytes: PackageResources.style_css)),
        "/app.js": File(contentType: "text/javascript; charset=utf-8", body: ByteBuffer(bytes: PackageResources.app_js)),
        "/connection.js": File(contentType: "text/javascript; charset=utf-8", body: ByteBuffer(bytes: PackageResources.connection_js)),
        "/wire.js": File(contentType: "text/javascript; charset=utf-8", body: ByteBuffer(bytes: PackageResources.wire_js)),
    ]

    /// Scripts, styles and WebSockets from this origin only; no frames,
    /// no inline code, no forms posted anywhere.
    static let policy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static func add(to router: Router<BasicRequestContext>) {
        router.get("/ws") { _, _ -> Response in
            text(.upgradeRequired, "this is a WebSocket endpoint: connect with ws:// or wss://\n")
        }
        for (path, file) in files {
            router.get(RouterPath(path)) { _, _ -> Response in
                var headers = HTTPFields()
                headers[.contentType] = file.contentType
                headers[.cacheControl] = "no-cache"
                headers[.contentSecurityPolicy] = policy
                headers[.xContentTypeOptions] = "nosniff"
                headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: file.body))
            }
        }
        router.get("/index.html") { _, _ in Response(status: .movedPermanently, headers: [.location: "/"]) }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

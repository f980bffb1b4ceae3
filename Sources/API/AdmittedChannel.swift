import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// A server child channel with `ConnectionAdmissionHandler` first in its pipeline: the
/// WebSocket upgrade channel installs the HTTP handlers only after a first request head,
/// so the connection limit and the first-request deadline have to sit below them.
struct AdmittedChannel<Base: ServerChildChannel>: ServerChildChannel {
    let table: ConnectionTable
    let timeout: TimeAmount
    let base: Base

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        let admission = ConnectionAdmissionHandler(table: table, firstRequestTimeout: timeout)
        do {
            try channel.pipeline.syncOperations.addHandler(admission)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Lets a request pass only with an accepted bearer token, when tokens are configured. The
/// panel's page, script and style (`PanelPage.files`) hold no data and pass without one: the
/// page asks for the token and sends it with its data requests.
struct AccessMiddleware<Context: RequestContext>: RouterMiddleware {
    let access: APIAccess

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let open = request.method == .get && PanelPage.files[request.uri.path] != nil
        guard open || access.allows(request.headers) else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer", .contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error": "this API needs a bearer token (Authorization: Bearer TOKEN)"}"# + "\n")))
        }
        return try await next(request, context)
    }
}

import Crypto
import HTTPTypes
import HummingbirdAuth

/// Who may use the API: anyone who reaches the listener (the default, on loopback), or
/// only a client that sends one of the configured bearer tokens (`api.token_file`).
public struct APIAccess: Sendable {
    /// SHA-256 digests of the accepted tokens; empty means no token is asked.
    private let digests: [[UInt8]]

    public init(tokens: [String] = []) {
        digests = tokens.map { Array(SHA256.hash(data: Array($0.utf8))) }
    }

    public var requiresToken: Bool { !digests.isEmpty }

    /// Whether a request with these headers may pass.
    public func allows(_ headers: HTTPFields) -> Bool {
        guard requiresToken else { return true }
        guard let token = headers.bearer?.token else { return false }
        // Compared as digests, so the time taken says nothing of a token's length or of how
        // many of its leading bytes matched; every configured token is compared.
        let given = Array(SHA256.hash(data: Array(token.utf8)))
        var matched = false
        for digest in digests {
            var difference: UInt8 = 0
            for i in 0..<digest.count { difference |= digest[i] ^ given[i] }
            matched = matched || difference == 0
        }
        return matched
    }
}

import Agent
import FuzzSupport

/// The config loader on any YAML text: an `AgentConfig` that passed validation, or a
/// `ConfigError` naming the key, never a trap (a typo in /etc/vmpulse/vmpulse.yaml must
/// give a message, not a crashed agent).
@main enum FuzzConfig {
    static func main() {
        FuzzMain.run { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            do throws(ConfigError) {
                let config = try AgentConfig.parse(yaml: text)
                do {
                    try config.validate()
                } catch {
                    preconditionFailure("parse(yaml:) returned a config that does not validate: \(error)")
                }
                _ = try? config.listenAddress()
            } catch {
                _ = error.description
            }
        }
    }
}

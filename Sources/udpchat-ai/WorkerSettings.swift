import AsyncHTTPClient
import ChatWire
import Foundation
import Ops

/// The AI worker's settings (the README and `.env.sample` document each).
struct WorkerSettings: Sendable {
    enum Provider: Sendable {
        case openAI(baseURL: String, apiKey: String)
        case azure(endpoint: String, deployment: String, apiVersion: String, apiKey: String)
        case ollama(host: String)
    }

    var common: CommonSettings
    var provider: Provider
    var model: String
    var sampling: Sampling
    var limits: CallLimits
    var concurrency: Int
    var heartbeat: Duration

    init(_ settings: SettingsReader) throws {
        common = try CommonSettings(settings)
        let mode = settings.string(.aiMode, default: "ollama")
        let apiKey = settings.string(.openAIKey, default: "")
        switch mode {
        case "gpt":
            // Azure when both of its variables are set, as in the original.
            if let endpoint = settings.raw(.azureEndpoint), let deployment = settings.raw(.azureDeployment) {
                provider = .azure(
                    endpoint: endpoint, deployment: deployment,
                    apiVersion: settings.string(.azureAPIVersion, default: "2024-05-01-preview"),
                    apiKey: settings.string(.azureAPIKey, default: apiKey))
                model = settings.string(.aiModel, default: deployment)
            } else {
                provider = .openAI(baseURL: settings.string(.openAIBaseURL, default: "https://api.openai.com/v1"), apiKey: apiKey)
                model = settings.string(.aiModel, default: "gpt-4o-mini")
            }
        case "ollama":
            provider = .ollama(host: OllamaChat.normalizedHost(settings.string(.ollamaHost, default: "http://127.0.0.1:11434")))
            model = settings.string(.aiModel, default: "mistral")
        default:
            throw ChatError.configuration("\(Setting.aiMode.name)=\(mode): expected ollama or gpt (the original's names)")
        }
        for (setting, url) in [(Setting.openAIBaseURL, settings.raw(.openAIBaseURL)), (.azureEndpoint, settings.raw(.azureEndpoint))] {
            if let url, URL(string: url)?.scheme == nil { throw ChatError.configuration("\(setting.name)=\(url): expected an http(s):// URL") }
        }
        sampling = Sampling(
            temperature: try settings.double(.aiTemperature),
            maxTokens: try settings.int(.aiMaxTokens),
            topP: try settings.double(.aiTopP),
            frequencyPenalty: try settings.double(.aiFrequencyPenalty),
            presencePenalty: try settings.double(.aiPresencePenalty))
        limits = CallLimits(
            firstToken: .milliseconds(try settings.int(.aiFirstTokenTimeout)),
            total: .milliseconds(try settings.int(.aiTimeout)))
        concurrency = try settings.int(.aiConcurrency)
        heartbeat = try settings.aiHeartbeat()
    }

    /// The model client for the configured provider.
    func model(client: HTTPClient) -> any ChatModel {
        switch provider {
        case .openAI(let baseURL, let apiKey):
            return OpenAIChat(client: client, dialect: .openAI(baseURL: baseURL, apiKey: apiKey), model: model, sampling: sampling)
        case .azure(let endpoint, let deployment, let apiVersion, let apiKey):
            return OpenAIChat(
                client: client, dialect: .azure(endpoint: endpoint, deployment: deployment, apiVersion: apiVersion, apiKey: apiKey),
                model: model, sampling: sampling)
        case .ollama(let host):
            return OllamaChat(client: client, host: host, model: model, sampling: sampling)
        }
    }
}

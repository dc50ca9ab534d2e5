using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lattice.Client.Json;

// The shapes the client reads off the wire. Only what it uses is declared; everything else is skipped.

internal sealed record ErrorEnvelope(ErrorBody? Error);

internal sealed record ErrorBody(string? Message, string? Type, JsonElement Param, JsonElement Code);

internal sealed record ModelList(IReadOnlyList<LatticeModel> Data);

internal sealed record TaskClassList(IReadOnlyList<TaskClass> Data);

internal sealed record RuntimeList(IReadOnlyList<PersonalRuntime> Runtimes);

internal sealed record ChatCompletion(string? Id, string? Model, long Created, IReadOnlyList<ChatChoice>? Choices, ChatUsage? Usage);

internal sealed record ChatChoice(int Index, ChatWireMessage? Message, ChatWireMessage? Delta, string? FinishReason);

internal sealed record ChatWireMessage(string? Role, string? Content, string? Refusal, IReadOnlyList<ChatToolCall>? ToolCalls);

internal sealed record ChatToolCall(int? Index, string? Id, string? Type, ChatFunctionCall? Function);

internal sealed record ChatFunctionCall(string? Name, string? Arguments);

internal sealed record ChatUsage(long PromptTokens, long CompletionTokens, long TotalTokens, TokenDetails? PromptTokensDetails, TokenDetails? CompletionTokensDetails);

internal sealed record TokenDetails(long? CachedTokens, long? ReasoningTokens);

internal sealed record EmbeddingList(string? Model, IReadOnlyList<EmbeddingItem> Data, ChatUsage? Usage);

internal sealed record EmbeddingItem(int Index, float[] Embedding);

internal sealed record Transcription(string? Text, string? Language, double? Duration);

internal sealed record OAuthTokenResponse(string? AccessToken, string? TokenType, long? ExpiresIn, string? RefreshToken, string? Scope, string? IdToken);

internal sealed record OAuthErrorResponse(string? Error, string? ErrorDescription);

internal sealed record DeviceAuthorizationResponse(string DeviceCode, string UserCode, string VerificationUri, string? VerificationUriComplete, long ExpiresIn, long? Interval);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, NumberHandling = JsonNumberHandling.AllowReadingFromString,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ErrorEnvelope))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(LatticeModel))]
[JsonSerializable(typeof(TaskClassList))]
[JsonSerializable(typeof(TaskClass))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(EmbeddingList))]
[JsonSerializable(typeof(Transcription))]
[JsonSerializable(typeof(UsageRequestPage))]
[JsonSerializable(typeof(UsagePage))]
[JsonSerializable(typeof(OAuthTokenResponse))]
[JsonSerializable(typeof(OAuthErrorResponse))]
[JsonSerializable(typeof(DeviceAuthorizationResponse))]
internal sealed partial class OpenAiJsonContext : JsonSerializerContext;

/// <summary>The personal-runtime records are camelCase (they are Lattice's own, not OpenAI-shaped).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(RuntimeList))]
[JsonSerializable(typeof(PersonalRuntime))]
[JsonSerializable(typeof(CreatedRuntime))]
internal sealed partial class RuntimeJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Lattice.Gateway.Runtimes;

public sealed record CreateRuntimeRequest(string? DisplayName, string? ExecutionBackend);

/// <summary>A runtime record as the API shows it. <c>status</c> is computed live.</summary>
public sealed record RuntimeDto(
    string LatticeId, string AccountId, string DisplayName, string ExecutionBackend, string Status, bool Hosted,
    string ModelId, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, DateTimeOffset? LastSeenAt, DateTimeOffset? RevokedAt,
    string? PublicWorkKey, IReadOnlyList<RuntimeCapabilityDto>? Capabilities);

public sealed record RuntimeCapabilityDto(string Task, string Model, string Engine);

public sealed record CreatedRuntimeDto(RuntimeDto Runtime, string BootstrapToken, DateTimeOffset BootstrapExpiresAt);

public sealed record RuntimeListDto(IReadOnlyList<RuntimeDto> Runtimes);

public sealed record PairRequest(string? BootstrapToken);

public sealed record PairResponse(string LatticeId, string RuntimeCredential, string ModelId);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(CreateRuntimeRequest))]
[JsonSerializable(typeof(RuntimeDto))]
[JsonSerializable(typeof(CreatedRuntimeDto))]
[JsonSerializable(typeof(RuntimeListDto))]
[JsonSerializable(typeof(PairRequest))]
[JsonSerializable(typeof(PairResponse))]
public sealed partial class RuntimeJsonContext : JsonSerializerContext;

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lattice.Gateway.Admin;

public sealed record CreateWorkspaceRequest(string? Name);
public sealed record WorkspaceDto(string Id, string Name, long CreatedAt);

public sealed record CreateKeyRequest(string? Name, string[]? Scopes, long? ExpiresAt);
public sealed record KeyDto(string Id, string WorkspaceId, string Name, string Prefix, string[] Scopes, long CreatedAt, long? ExpiresAt, long? RevokedAt);
public sealed record CreatedKeyDto(string Id, string WorkspaceId, string Name, string Prefix, string[] Scopes, long CreatedAt, long? ExpiresAt, string Key);

public sealed record TaskClassRequest(string? Name, JsonElement? InputSchema, bool? Streams, string? ContentType, string? UpstreamPath, string? UsagePath);
public sealed record TaskClassDto(string Name, JsonElement InputSchema, bool Streams, string ContentType, string UpstreamPath, string? UsagePath, bool BuiltIn, long CreatedAt);

public sealed record OfferRequest(string? Task, string? BaseUrl, string? Runtime, string? Credential, string? UpstreamModel, int? Priority, int? TimeoutSeconds);
public sealed record ModelRequest(string? Id, string? OwnedBy, OfferRequest[]? Offers);
public sealed record OfferDto(string Id, string? Task, string Kind, string? BaseUrl, string? Runtime, string? Credential, string UpstreamModel, int Priority, int? TimeoutSeconds);
public sealed record HostedRuntimeRequest(string? DisplayName);
public sealed record HostedRuntimeDto(string LatticeId, string DisplayName, string BootstrapToken, long BootstrapExpiresAt);
public sealed record ModelDto(string Id, string OwnedBy, long CreatedAt, OfferDto[] Offers);

public sealed record ListDto<T>(IReadOnlyList<T> Data)
{
    public string Object => "list";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(CreateWorkspaceRequest))]
[JsonSerializable(typeof(WorkspaceDto))]
[JsonSerializable(typeof(ListDto<WorkspaceDto>))]
[JsonSerializable(typeof(CreateKeyRequest))]
[JsonSerializable(typeof(KeyDto))]
[JsonSerializable(typeof(CreatedKeyDto))]
[JsonSerializable(typeof(ListDto<KeyDto>))]
[JsonSerializable(typeof(TaskClassRequest))]
[JsonSerializable(typeof(TaskClassDto))]
[JsonSerializable(typeof(ListDto<TaskClassDto>))]
[JsonSerializable(typeof(ModelRequest))]
[JsonSerializable(typeof(ModelDto))]
[JsonSerializable(typeof(ListDto<ModelDto>))]
[JsonSerializable(typeof(HostedRuntimeRequest))]
[JsonSerializable(typeof(HostedRuntimeDto))]
public sealed partial class AdminJsonContext : JsonSerializerContext;

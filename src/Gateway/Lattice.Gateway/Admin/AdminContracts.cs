using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lattice.Gateway.Admin;

public sealed record CreateWorkspaceRequest(string? Name);
public sealed record WorkspaceDto(string Id, string Name, long CreatedAt);

public sealed record CreateKeyRequest(string? Name, string[]? Scopes, long? ExpiresAt, JsonElement? Limits = null);
public sealed record KeyDto(string Id, string WorkspaceId, string Name, string Prefix, string[] Scopes, long CreatedAt, long? ExpiresAt, long? RevokedAt, Billing.Limits? Limits = null);
public sealed record CreatedKeyDto(string Id, string WorkspaceId, string Name, string Prefix, string[] Scopes, long CreatedAt, long? ExpiresAt, string Key, Billing.Limits? Limits = null);

/// <summary>The rate limits on a workspace, key or app (<paramref name="Scope"/>); null when there are none.</summary>
public sealed record LimitsDto(string Scope, string Id, Billing.Limits? Limits)
{
    public string Object => "limits";
}

/// <param name="SpentUsd">Spent this period (null for a per-user budget unless a user was asked about).</param>
/// <param name="UserId">For a per-user app budget: the user whose spend is shown.</param>
/// <param name="AlertSecret">The alert signing secret: only in the answer that created it (or a new alert URL).</param>
public sealed record BudgetDto(string Id, string WorkspaceId, string Scope, string SubjectId, string AmountUsd, string Period,
    long PeriodStart, long PeriodEnd, string? SpentUsd, string? ReservedUsd, string? UserId, long CreatedAt, string? AlertUrl, string? AlertSecret = null)
{
    public string Object => "budget";
}

public sealed record DeletedDto(string Id, string Object, bool Deleted);

public sealed record TaskClassRequest(string? Name, JsonElement? InputSchema, bool? Streams, string? ContentType, string? UpstreamPath, string? UsagePath, string? MeteringUnit = null);
public sealed record TaskClassDto(string Name, JsonElement InputSchema, bool Streams, string ContentType, string UpstreamPath, string? UsagePath, string MeteringUnit, bool BuiltIn, long CreatedAt);

/// <param name="Prices">This offer's own prices (<see cref="Metering.Prices"/> fields), overriding the model's; absent or null: the model's.</param>
/// <param name="Kind">Which API the upstream at <c>base_url</c> speaks: <c>upstream</c> (OpenAI's, the default) or <c>anthropic</c> (Anthropic's Messages API).</param>
/// <param name="ServesResponses">An OpenAI upstream that serves <c>/v1/responses</c> itself: Responses requests pass through untranslated.</param>
public sealed record OfferRequest(string? Task, string? BaseUrl, string? Runtime, string? Credential, string? UpstreamModel, int? Priority, int? TimeoutSeconds, string? Capacity = null, JsonElement? Prices = null,
    string? Kind = null, bool? ServesResponses = null);
/// <param name="Prices">The model's prices; on PUT, absent or null keeps them and <c>{}</c> makes the model free.</param>
/// <param name="MaxOutputTokens">The most output tokens one answer can have: what budgets reserve for a request without <c>max_tokens</c>; on PUT, absent keeps it.</param>
public sealed record ModelRequest(string? Id, string? OwnedBy, OfferRequest[]? Offers, JsonElement? Prices = null, int? MaxOutputTokens = null);
public sealed record OfferDto(string Id, string? Task, string Kind, string? BaseUrl, string? Runtime, string? Credential, string UpstreamModel, int Priority, int? TimeoutSeconds, string Capacity, Metering.Prices? Prices, bool ServesResponses = false);
public sealed record WorkspacePricesRequest(JsonElement? Prices);
public sealed record WorkspacePricesDto(string WorkspaceId, Metering.Prices? Prices);
public sealed record HostedRuntimeRequest(string? DisplayName);
public sealed record HostedRuntimeDto(string LatticeId, string DisplayName, string BootstrapToken, long BootstrapExpiresAt);
/// <param name="OwnerUserId">The user whose personal runtime it is; null for a workspace's shared runtime or a hosted one.</param>
public sealed record AdminRuntimeDto(string LatticeId, string WorkspaceId, string DisplayName, bool Hosted, string? OwnerUserId, string Status, long? RevokedAt);
public sealed record ModelDto(string Id, string OwnedBy, long CreatedAt, Metering.Prices? Prices, OfferDto[] Offers, int? MaxOutputTokens = null);

public sealed record CreateUserRequest(string? Email, string? Name, string? Password, bool? EmailVerified);
public sealed record UserDto(string Id, string Email, string Name, bool EmailVerified, long CreatedAt);
public sealed record AddMemberRequest(string? UserId, string? Role);
public sealed record MemberDto(string WorkspaceId, string UserId, string Email, string Role, long CreatedAt);
public sealed record CreateAppRequest(string? Name, string[]? RedirectUris, string[]? Scopes, bool? Confidential, bool? DeviceFlow);
public sealed record AppDto(string ClientId, string WorkspaceId, string Name, string[] RedirectUris, string[] Scopes, bool Confidential, bool DeviceFlow, long CreatedAt, string? ClientSecret = null);
public sealed record CreateInvitationRequest(string? Email, string? Role);
public sealed record InvitationDto(string Id, string WorkspaceId, string Email, string Role, long CreatedAt, long ExpiresAt, long? AcceptedAt, long? RevokedAt, string? AcceptUrl = null);
public sealed record GrantDto(string Id, string WorkspaceId, string UserId, string ClientId, string[] Scopes, long CreatedAt, long? RevokedAt);

public sealed record ListDto<T>(IReadOnlyList<T> Data)
{
    public string Object => "list";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(CreateWorkspaceRequest))]
[JsonSerializable(typeof(CreateUserRequest))]
[JsonSerializable(typeof(UserDto))]
[JsonSerializable(typeof(ListDto<UserDto>))]
[JsonSerializable(typeof(AddMemberRequest))]
[JsonSerializable(typeof(MemberDto))]
[JsonSerializable(typeof(ListDto<MemberDto>))]
[JsonSerializable(typeof(CreateAppRequest))]
[JsonSerializable(typeof(AppDto))]
[JsonSerializable(typeof(ListDto<AppDto>))]
[JsonSerializable(typeof(CreateInvitationRequest))]
[JsonSerializable(typeof(InvitationDto))]
[JsonSerializable(typeof(ListDto<InvitationDto>))]
[JsonSerializable(typeof(GrantDto))]
[JsonSerializable(typeof(ListDto<GrantDto>))]
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
[JsonSerializable(typeof(AdminRuntimeDto))]
[JsonSerializable(typeof(WorkspacePricesRequest))]
[JsonSerializable(typeof(WorkspacePricesDto))]
[JsonSerializable(typeof(LimitsDto))]
[JsonSerializable(typeof(BudgetDto))]
[JsonSerializable(typeof(ListDto<BudgetDto>))]
[JsonSerializable(typeof(DeletedDto))]
public sealed partial class AdminJsonContext : JsonSerializerContext;

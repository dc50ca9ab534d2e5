namespace Lattice.Gateway.Persistence;

/// <summary>The billing and access boundary.</summary>
public sealed class WorkspaceEntity
{
    public required string Id { get; set; }
    public required string Name { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>What this workspace charges for its own personal runtimes' requests, as <see cref="Metering.Prices"/> JSON; null: nothing.</summary>
    public string? PersonalRuntimePrices { get; set; }
    /// <summary>Rate limits on the whole workspace, as <see cref="Billing.Limits"/> JSON; null: none.</summary>
    public string? Limits { get; set; }
    /// <summary>The workspace's Stripe customer (<c>cus_…</c>), when its usage is billed through Stripe.</summary>
    public string? StripeCustomerId { get; set; }
}

/// <summary>A developer key. Only the SHA-256 of the secret is stored.</summary>
public sealed class ApiKeyEntity
{
    public required string Id { get; set; }
    public required string WorkspaceId { get; set; }
    public required string Name { get; set; }
    /// <summary>The first characters of the secret, for people to recognise a key in a list.</summary>
    public required string Prefix { get; set; }
    /// <summary>Lowercase hex SHA-256 of the whole secret.</summary>
    public required string Hash { get; set; }
    /// <summary>Space-separated scopes.</summary>
    public required string Scopes { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? ExpiresAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
    /// <summary>Rate limits on this key, as <see cref="Billing.Limits"/> JSON; null: none.</summary>
    public string? Limits { get; set; }
}

/// <summary>A task class: catalog data that makes <c>/v1/tasks/{name}</c> dispatchable.</summary>
public sealed class TaskClassEntity
{
    public required string Name { get; set; }
    /// <summary>JSON Schema (2020-12) of the input document.</summary>
    public required string InputSchema { get; set; }
    public bool Streams { get; set; }
    /// <summary><c>application/json</c> or <c>multipart/form-data</c>.</summary>
    public required string ContentType { get; set; }
    /// <summary>Path below an OpenAI-compatible base URL that serves this task (e.g. <c>chat/completions</c>).</summary>
    public required string UpstreamPath { get; set; }
    /// <summary>JSON path of the usage object in a response (e.g. <c>usage</c>).</summary>
    public string? UsagePath { get; set; }
    /// <summary>What the task is metered in: <c>tokens</c>, <c>seconds</c> (audio) or <c>requests</c>.</summary>
    public string MeteringUnit { get; set; } = "tokens";
    public bool BuiltIn { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>A canonical catalog model (<c>lovelace:&lt;name&gt;</c>) or an alias.</summary>
public sealed class CatalogModelEntity
{
    public required string Id { get; set; }
    public required string OwnedBy { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>The model's prices as <see cref="Metering.Prices"/> JSON; null: free.</summary>
    public string? Prices { get; set; }
    /// <summary>The most output tokens one answer can have: what a budget reserves when a request names no <c>max_tokens</c>.</summary>
    public int? MaxOutputTokens { get; set; }
    public List<ModelOfferEntity> Offers { get; set; } = [];
}

/// <summary>One way to serve a catalog model: for now an OpenAI-compatible upstream.</summary>
public sealed class ModelOfferEntity
{
    public required string Id { get; set; }
    public required string ModelId { get; set; }
    /// <summary>The task this offer serves; null serves every task of the model.</summary>
    public string? Task { get; set; }
    /// <summary><c>upstream</c> (an OpenAI-compatible HTTP endpoint), <c>anthropic</c> (Anthropic's Messages API) or <c>runtime</c> (a hosted runtime daemon).</summary>
    public required string Kind { get; set; }
    /// <summary>For upstream offers: the endpoint's base URL; empty for runtime offers.</summary>
    public required string BaseUrl { get; set; }
    /// <summary>For runtime offers: the hosted runtime's <c>lat_…</c> id.</summary>
    public string? RuntimeId { get; set; }
    /// <summary>Name of a credential in configuration (<c>Lattice:Credentials:&lt;name&gt;</c>); never the secret.</summary>
    public string? CredentialName { get; set; }
    public required string UpstreamModel { get; set; }
    public int Priority { get; set; }
    public int? TimeoutSeconds { get; set; }
    /// <summary><c>hosted</c> (operator capacity) or <c>marketplace</c> (third-party providers; never used for private-only requests).</summary>
    public string Capacity { get; set; } = "hosted";
    /// <summary>This offer's prices as <see cref="Metering.Prices"/> JSON, overriding the model's; null: the model's.</summary>
    public string? Prices { get; set; }
    /// <summary>An OpenAI upstream that serves the Responses API itself: Responses requests pass through untranslated.</summary>
    public bool ServesResponses { get; set; }
}

/// <summary>A runtime daemon's record: a user's personal runtime, or operator-hosted capacity.</summary>
public sealed class RuntimeEntity
{
    /// <summary><c>lat_…</c>.</summary>
    public required string LatticeId { get; set; }
    /// <summary>The workspace (account) it belongs to and serves.</summary>
    public required string WorkspaceId { get; set; }
    public required string DisplayName { get; set; }
    /// <summary><c>local-model</c> or <c>assistant-runtime</c>.</summary>
    public required string ExecutionBackend { get; set; }
    /// <summary>Operator capacity that serves catalog models, rather than one workspace's personal runtime.</summary>
    public bool Hosted { get; set; }
    /// <summary>The user whose personal runtime this is (created with their OAuth grant); null for workspace capacity.</summary>
    public string? OwnerUserId { get; set; }
    public string? BootstrapTokenHash { get; set; }
    public DateTimeOffset? BootstrapExpiresAt { get; set; }
    public DateTimeOffset? PairedAt { get; set; }
    /// <summary>SHA-256 of the long-lived runtime credential (<c>lrt_…</c>), set at pairing.</summary>
    public string? CredentialHash { get; set; }
    public string? PublicWorkKey { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? LastSeenAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
}

/// <summary>A person who signs in. The password is stored only as an ASP.NET Core Identity hash.</summary>
public sealed class UserEntity
{
    /// <summary><c>usr_…</c>.</summary>
    public required string Id { get; set; }
    /// <summary>Lowercase; unique.</summary>
    public required string Email { get; set; }
    public required string DisplayName { get; set; }
    public required string PasswordHash { get; set; }
    /// <summary>
    /// Whether the address is known to be the person's: false for an account made from an invitation link (whoever
    /// held the link chose the password) until an operator verifies it. Tokens carry it as <c>email_verified</c>.
    /// </summary>
    public bool EmailVerified { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>A user's membership of a workspace.</summary>
public sealed class WorkspaceMemberEntity
{
    public required string WorkspaceId { get; set; }
    public required string UserId { get; set; }
    /// <summary><c>owner</c> or <c>member</c>.</summary>
    public required string Role { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>
/// An OAuth app a developer workspace registered. The OpenIddict application row holds its redirect URIs,
/// permissions and hashed secret; this row says which workspace owns it.
/// </summary>
public sealed class OAuthAppEntity
{
    public required string ClientId { get; set; }
    public required string WorkspaceId { get; set; }
    public required string Name { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>Rate limits that apply to each user of the app separately, as <see cref="Billing.Limits"/> JSON; null: none.</summary>
    public string? Limits { get; set; }
}

/// <summary>
/// A grant: what a user allowed an app to do with their compute in one workspace. Backed by an OpenIddict
/// authorization with the same id; tokens carry that id, so revoking the grant revokes them all.
/// </summary>
public sealed class OAuthGrantEntity
{
    /// <summary>The OpenIddict authorization id.</summary>
    public required string Id { get; set; }
    /// <summary>The workspace that pays, and whose private capacity serves.</summary>
    public required string WorkspaceId { get; set; }
    public required string UserId { get; set; }
    public required string ClientId { get; set; }
    /// <summary>Space-separated scopes granted.</summary>
    public required string Scopes { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
}

/// <summary>
/// An append-only log of revocations (grants, tokens, keys). Every gateway node polls it to keep its in-memory
/// revocation set current; the node that revokes applies it at once.
/// </summary>
public sealed class RevocationEntity
{
    public long Seq { get; set; }
    /// <summary><c>grant</c> (an authorization id), <c>token</c> (a token id), <c>key</c> (a developer key id) or <c>runtime</c> (a lattice id).</summary>
    public required string Kind { get; set; }
    public required string SubjectId { get; set; }
    public DateTimeOffset RevokedAt { get; set; }
}

/// <summary>
/// An invitation to join a workspace, sent to one e-mail address. Only the SHA-256 of its link's token is stored;
/// it works once, before it expires, and only for a person signed in with (or signing up with) that address.
/// </summary>
public sealed class InvitationEntity
{
    /// <summary><c>inv_…</c>.</summary>
    public required string Id { get; set; }
    public required string WorkspaceId { get; set; }
    /// <summary>Lowercase.</summary>
    public required string Email { get; set; }
    public required string Role { get; set; }
    public required string TokenHash { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    public DateTimeOffset? AcceptedAt { get; set; }
    public string? AcceptedBy { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
}

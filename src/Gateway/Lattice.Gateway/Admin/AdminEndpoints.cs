using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Upstreams;
using Lattice.Protocol;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Admin;

/// <summary>The operator's API: workspaces, developer keys, task classes and catalog models. Needs the <c>lattice:admin</c> scope.</summary>
public static class AdminEndpoints
{
    public static IEndpointRouteBuilder MapAdmin(this IEndpointRouteBuilder routes)
    {
        // Checked by the scope gate before the handlers bind their bodies. Workspace routes also take a workspace's
        // own admin credential; their handlers then check which workspace with Manages.
        var admin = routes.MapGroup("/admin/v1").RequireScope(Scopes.Admin);
        var workspace = routes.MapGroup("/admin/v1").RequireScope(Scopes.WorkspaceAdmin, Scopes.Admin);

        admin.MapPost("/workspaces", CreateWorkspaceAsync).Describe("Admin: workspaces and keys", "CreateWorkspace", "Create a workspace");
        admin.MapGet("/workspaces", ListWorkspacesAsync).Describe("Admin: workspaces and keys", "ListWorkspaces", "List workspaces");
        workspace.MapPost("/workspaces/{workspaceId}/keys", CreateKeyAsync).Describe("Admin: workspaces and keys", "CreateKey", "Create a developer key (the secret is shown once)");
        workspace.MapGet("/workspaces/{workspaceId}/keys", ListKeysAsync).Describe("Admin: workspaces and keys", "ListKeys", "List a workspace's keys");
        workspace.MapPost("/keys/{keyId}/revoke", RevokeKeyAsync).Describe("Admin: workspaces and keys", "RevokeKey", "Revoke a developer key");
        workspace.MapGet("/workspaces/{workspaceId}/prices", GetWorkspacePricesAsync).Describe("Admin: workspaces and keys", "GetWorkspacePrices", "A workspace's personal-runtime prices");
        workspace.MapPut("/workspaces/{workspaceId}/prices", SetWorkspacePricesAsync).Describe("Admin: workspaces and keys", "SetWorkspacePrices", "Set a workspace's personal-runtime prices");
        IdentityAdminEndpoints.Map(admin, workspace);
        Billing.BillingAdminEndpoints.Map(admin, workspace);

        admin.MapGet("/task-classes", ListTaskClassesAsync).Describe("Admin: catalog", "ListTaskClasses", "List task classes");
        admin.MapGet("/task-classes/{name}", GetTaskClassAsync).Describe("Admin: catalog", "GetTaskClass", "Get a task class and its input schema");
        admin.MapPost("/task-classes", CreateTaskClassAsync).Describe("Admin: catalog", "CreateTaskClass", "Create a task class");
        admin.MapDelete("/task-classes/{name}", DeleteTaskClassAsync).Describe("Admin: catalog", "DeleteTaskClass", "Delete a task class");

        admin.MapPost("/runtimes", CreateHostedRuntimeAsync).Describe("Admin: catalog", "CreateHostedRuntime", "Create an operator-hosted runtime and its pairing token");
        admin.MapPost("/runtimes/{latticeId}/revoke", RevokeRuntimeAsync).Describe("Admin: catalog", "RevokeRuntime", "Revoke any runtime");

        admin.MapGet("/models", ListModelsAsync).Describe("Admin: catalog", "ListCatalogModels", "List catalog models with their offers");
        admin.MapPost("/models", CreateModelAsync).Describe("Admin: catalog", "CreateCatalogModel", "Create a catalog model with its offers");
        admin.MapPut("/models/{**id}", ReplaceModelAsync).Describe("Admin: catalog", "ReplaceCatalogModel", "Replace a catalog model and its offers");
        admin.MapDelete("/models/{**id}", DeleteModelAsync).Describe("Admin: catalog", "DeleteCatalogModel", "Delete a catalog model");
        return routes;
    }

    /// <summary>The caller the scope gate authenticated.</summary>
    internal static Caller CallerOf(HttpContext context) => ScopeGate.CallerOf(context);

    /// <summary>Operators manage every workspace; anyone else only their own — and another's looks like it does not exist.</summary>
    internal static bool Manages(HttpContext context, string workspaceId)
    {
        var caller = CallerOf(context);
        return caller.HasScope(Scopes.Admin) || (caller.HasScope(Scopes.WorkspaceAdmin) && caller.WorkspaceId == workspaceId);
    }

    internal static GatewayError WorkspaceNotFound(string workspaceId) => GatewayError.NotFound($"The workspace '{workspaceId}' does not exist.");

    // ---- workspaces and keys ----

    private static async Task<IResult> CreateWorkspaceAsync(CreateWorkspaceRequest? body, LatticeDbContext db, TimeProvider time)
    {
        var name = body?.Name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 200)
        {
            return Error(GatewayError.InvalidRequest("'name' is required (1 to 200 characters).", "name"));
        }
        var ws = new WorkspaceEntity { Id = ApiKeySecrets.NewId("ws_"), Name = name, CreatedAt = time.GetUtcNow() };
        db.Workspaces.Add(ws);
        await db.SaveChangesAsync();
        return Json(new WorkspaceDto(ws.Id, ws.Name, ws.CreatedAt.ToUnixTimeSeconds()), AdminJsonContext.Default.WorkspaceDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListWorkspacesAsync(LatticeDbContext db)
    {
        var rows = await db.Workspaces.AsNoTracking().ToListAsync();
        var data = rows.OrderBy(w => w.CreatedAt).Select(w => new WorkspaceDto(w.Id, w.Name, w.CreatedAt.ToUnixTimeSeconds())).ToList();
        return Json(new ListDto<WorkspaceDto>(data), AdminJsonContext.Default.ListDtoWorkspaceDto);
    }

    private static async Task<IResult> CreateKeyAsync(HttpContext context, string workspaceId, CreateKeyRequest? body, LatticeDbContext db, ApiKeyStore keys,
        TimeProvider time)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var scopes = body?.Scopes ?? Scopes.DeveloperDefault;
        foreach (var scope in scopes)
        {
            if (Array.IndexOf(Scopes.Known, scope) < 0)
            {
                return Error(GatewayError.InvalidRequest($"Unknown scope '{scope}'.", "scopes"));
            }
            if (scope == Scopes.Admin && !CallerOf(context).HasScope(Scopes.Admin))
            {
                return Error(GatewayError.MissingScope(Scopes.Admin));
            }
        }
        var now = time.GetUtcNow();
        DateTimeOffset? expires = null;
        if (body?.ExpiresAt is { } expiresAt)
        {
            if (expiresAt <= now.ToUnixTimeSeconds() || expiresAt > 253402300799)
            {
                return Error(GatewayError.InvalidRequest("'expires_at' must be a Unix time in the future.", "expires_at"));
            }
            expires = DateTimeOffset.FromUnixTimeSeconds(expiresAt);
        }
        Billing.Limits? limits = null;
        if (body?.Limits is { } limitsElement && !Billing.LimitsJson.TryRead(limitsElement, "limits", out limits, out var limitsError))
        {
            return Error(limitsError);
        }
        var name = string.IsNullOrWhiteSpace(body?.Name) ? "key" : body.Name.Trim();
        var secret = ApiKeySecrets.NewSecret();
        var entity = DatabaseInitializer.NewKey(workspaceId, name, secret, string.Join(' ', scopes), now, expires);
        entity.Limits = Billing.LimitsJson.ToStored(limits);
        await keys.CreateAsync(entity);
        return Json(new CreatedKeyDto(entity.Id, entity.WorkspaceId, entity.Name, entity.Prefix, scopes, now.ToUnixTimeSeconds(),
            expires?.ToUnixTimeSeconds(), secret, limits), AdminJsonContext.Default.CreatedKeyDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListKeysAsync(HttpContext context, string workspaceId, LatticeDbContext db)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var rows = await db.ApiKeys.AsNoTracking().Where(k => k.WorkspaceId == workspaceId).ToListAsync();
        return Json(new ListDto<KeyDto>(rows.OrderBy(k => k.CreatedAt).Select(ToDto).ToList()), AdminJsonContext.Default.ListDtoKeyDto);
    }

    private static async Task<IResult> RevokeKeyAsync(HttpContext context, string keyId, LatticeDbContext db, ApiKeyStore keys)
    {
        var key = await db.ApiKeys.AsNoTracking().FirstOrDefaultAsync(k => k.Id == keyId);
        if (key is null || !Manages(context, key.WorkspaceId))
        {
            return Error(GatewayError.NotFound($"The key '{keyId}' does not exist."));
        }
        // In force on this node before the response, so the very next request with this key fails; on the others
        // within a second, through the change feed.
        var revoked = await keys.RevokeAsync(keyId);
        return Json(ToDto(revoked ?? key), AdminJsonContext.Default.KeyDto);
    }

    internal static KeyDto ToDto(ApiKeyEntity k) => new(
        k.Id, k.WorkspaceId, k.Name, k.Prefix, k.Scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries),
        k.CreatedAt.ToUnixTimeSeconds(), k.ExpiresAt?.ToUnixTimeSeconds(), k.RevokedAt?.ToUnixTimeSeconds(), Billing.LimitsJson.FromStored(k.Limits));

    // ---- workspace prices (what a workspace's own personal runtimes charge) ----

    private static async Task<IResult> GetWorkspacePricesAsync(HttpContext context, string workspaceId, LatticeDbContext db)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is not { } ws)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        return Json(new WorkspacePricesDto(ws.Id, StoredPrices(ws.PersonalRuntimePrices)), AdminJsonContext.Default.WorkspacePricesDto);
    }

    private static async Task<IResult> SetWorkspacePricesAsync(HttpContext context, string workspaceId, WorkspacePricesRequest? body, LatticeDbContext db, WorkspacePrices store)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.AsNoTracking().FirstOrDefaultAsync(w => w.Id == workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        if (!IsGiven(body?.Prices))
        {
            return Error(GatewayError.InvalidRequest("'prices' is required ({} for free).", "prices", ErrorCodes.MissingRequiredParameter));
        }
        if (!PricesJson.TryRead(body!.Prices!.Value, "prices", out var prices, out var error))
        {
            return Error(error);
        }
        var ws = await store.SetAsync(workspaceId, PricesJson.ToStored(prices));
        return ws is null
            ? Error(WorkspaceNotFound(workspaceId))
            : Json(new WorkspacePricesDto(ws.Id, StoredPrices(ws.PersonalRuntimePrices)), AdminJsonContext.Default.WorkspacePricesDto);
    }

    /// <summary>Prices as the admin API shows them: null when nothing is priced.</summary>
    private static Prices? StoredPrices(string? json) => PricesJson.TryFromStored(json, out var prices) ? prices : null;

    private static bool IsGiven(JsonElement? element) => element is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) };

    // ---- task classes ----

    private static async Task<IResult> ListTaskClassesAsync(LatticeDbContext db)
    {
        var rows = await db.TaskClasses.AsNoTracking().ToListAsync();
        return Json(new ListDto<TaskClassDto>(rows.OrderBy(t => t.Name, StringComparer.Ordinal).Select(ToDto).ToList()),
            AdminJsonContext.Default.ListDtoTaskClassDto);
    }

    private static async Task<IResult> GetTaskClassAsync(string name, LatticeDbContext db)
    {
        var row = await db.TaskClasses.FindAsync(name);
        return row is null ? Error(GatewayError.TaskNotFound(name)) : Json(ToDto(row), AdminJsonContext.Default.TaskClassDto);
    }

    private static async Task<IResult> CreateTaskClassAsync(TaskClassRequest? body, LatticeDbContext db, CatalogStore catalog, TimeProvider time)
    {
        var name = body?.Name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 128 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
        {
            return Error(GatewayError.InvalidRequest("'name' is required: letters, digits, '.', '-' and '_' (at most 128).", "name"));
        }
        if (body!.InputSchema is not { ValueKind: JsonValueKind.Object } schemaElement)
        {
            return Error(GatewayError.InvalidRequest("'input_schema' must be a JSON Schema object.", "input_schema"));
        }
        var schemaText = schemaElement.GetRawText();
        if (InputSchema.TryCreate(schemaText, out var schemaError) is null)
        {
            return Error(GatewayError.InvalidRequest($"'input_schema' is not a usable JSON Schema: {schemaError}", "input_schema"));
        }
        var contentType = body.ContentType ?? "application/json";
        if (contentType is not ("application/json" or "multipart/form-data"))
        {
            return Error(GatewayError.InvalidRequest("'content_type' must be 'application/json' or 'multipart/form-data'.", "content_type"));
        }
        var upstreamPath = (body.UpstreamPath ?? name.Replace('.', '/')).Trim('/');
        if (upstreamPath.Length == 0 || upstreamPath.Contains("..", StringComparison.Ordinal) || upstreamPath.Contains(':'))
        {
            return Error(GatewayError.InvalidRequest("'upstream_path' must be a relative path such as 'images/generations'.", "upstream_path"));
        }
        var meteringUnit = body.MeteringUnit ?? MeteringUnits.Tokens;
        if (Array.IndexOf(MeteringUnits.All, meteringUnit) < 0)
        {
            return Error(GatewayError.InvalidRequest($"'metering_unit' must be one of: {string.Join(", ", MeteringUnits.All)}.", "metering_unit"));
        }
        if (await db.TaskClasses.FindAsync(name) is not null)
        {
            return Error(new GatewayError(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.Conflict, $"The task class '{name}' already exists.", "name"));
        }
        var row = new TaskClassEntity
        {
            Name = name,
            InputSchema = schemaText,
            Streams = body.Streams ?? false,
            ContentType = contentType,
            UpstreamPath = upstreamPath,
            UsagePath = body.UsagePath,
            MeteringUnit = meteringUnit,
            BuiltIn = false,
            CreatedAt = time.GetUtcNow(),
        };
        await catalog.AddTaskClassAsync(row);
        return Json(ToDto(row), AdminJsonContext.Default.TaskClassDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> DeleteTaskClassAsync(string name, LatticeDbContext db, CatalogStore catalog)
    {
        var row = await db.TaskClasses.AsNoTracking().FirstOrDefaultAsync(t => t.Name == name);
        if (row is null)
        {
            return Error(GatewayError.TaskNotFound(name));
        }
        if (row.BuiltIn)
        {
            return Error(GatewayError.InvalidRequest($"The built-in task class '{name}' cannot be deleted.", "name"));
        }
        return await catalog.DeleteTaskClassAsync(name) ? TypedResults.NoContent() : Error(GatewayError.TaskNotFound(name));
    }

    private static TaskClassDto ToDto(TaskClassEntity t)
    {
        using var doc = JsonDocument.Parse(t.InputSchema);
        return new TaskClassDto(t.Name, doc.RootElement.Clone(), t.Streams, t.ContentType, t.UpstreamPath, t.UsagePath, t.MeteringUnit, t.BuiltIn, t.CreatedAt.ToUnixTimeSeconds());
    }

    // ---- hosted runtimes ----

    private static async Task<IResult> CreateHostedRuntimeAsync(HostedRuntimeRequest? body, Runtimes.RuntimeStore store, TimeProvider time)
    {
        var (entity, token, error) = await Runtimes.RuntimeEndpoints.CreateRecordAsync(store, time, DatabaseInitializer.OperatorWorkspaceId,
            new Runtimes.CreateRuntimeRequest(body?.DisplayName, "local-model"), hosted: true);
        if (error is { } e)
        {
            return Error(e with { Param = "display_name" });
        }
        return Json(new HostedRuntimeDto(entity!.LatticeId, entity.DisplayName, token!, entity.BootstrapExpiresAt!.Value.ToUnixTimeSeconds()),
            AdminJsonContext.Default.HostedRuntimeDto, StatusCodes.Status201Created);
    }

    /// <summary>An operator revokes any runtime, hosted or personal, of any workspace: the same revocation as the owner's.</summary>
    private static async Task<IResult> RevokeRuntimeAsync(string latticeId, LatticeDbContext db, Runtimes.RuntimeRegistry registry, Runtimes.RuntimeRevoker revoker)
    {
        var row = await db.Runtimes.FirstOrDefaultAsync(r => r.LatticeId == latticeId);
        if (row is null)
        {
            return Error(GatewayError.NotFound($"The runtime '{latticeId}' does not exist."));
        }
        await revoker.RevokeAsync(row);
        var status = Runtimes.RuntimeEndpoints.ToDto(row, registry).Status;
        return Json(new AdminRuntimeDto(row.LatticeId, row.WorkspaceId, row.DisplayName, row.Hosted, row.OwnerUserId, status, row.RevokedAt?.ToUnixTimeSeconds()),
            AdminJsonContext.Default.AdminRuntimeDto);
    }

    // ---- models ----

    private static async Task<IResult> ListModelsAsync(LatticeDbContext db)
    {
        var rows = await db.Models.AsNoTracking().Include(m => m.Offers).ToListAsync();
        return Json(new ListDto<ModelDto>(rows.OrderBy(m => m.Id, StringComparer.Ordinal).Select(ToDto).ToList()), AdminJsonContext.Default.ListDtoModelDto);
    }

    private static async Task<IResult> CreateModelAsync(ModelRequest? body, LatticeDbContext db, CatalogStore catalog, IOptions<UpstreamCredentialsOptions> credentials, TimeProvider time)
    {
        var id = body?.Id?.Trim();
        if (string.IsNullOrEmpty(id) || ModelId.Parse(id).Kind is ModelIdKind.Invalid or ModelIdKind.PersonalRuntime)
        {
            return Error(GatewayError.InvalidRequest("'id' must be a model id such as 'lovelace:<name>'.", "id"));
        }
        if (await db.Models.FindAsync(id) is not null)
        {
            return Error(new GatewayError(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.Conflict, $"The model '{id}' already exists.", "id"));
        }
        var (offers, error) = BuildOffers(id, body!.Offers, credentials.Value);
        if (offers is null)
        {
            return Error(error);
        }
        var prices = Prices.Free;
        if (IsGiven(body.Prices) && !PricesJson.TryRead(body.Prices!.Value, "prices", out prices, out error))
        {
            return Error(error);
        }
        if (body.MaxOutputTokens is < 1)
        {
            return Error(MaxOutputTokensInvalid());
        }
        var row = new CatalogModelEntity
        {
            Id = id,
            OwnedBy = string.IsNullOrWhiteSpace(body.OwnedBy) ? "lattice" : body.OwnedBy.Trim(),
            CreatedAt = time.GetUtcNow(),
            Prices = PricesJson.ToStored(prices),
            MaxOutputTokens = body.MaxOutputTokens,
            Offers = offers,
        };
        await catalog.AddModelAsync(row);
        return Json(ToDto(row), AdminJsonContext.Default.ModelDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ReplaceModelAsync(string id, ModelRequest? body, LatticeDbContext db, CatalogStore catalog, IOptions<UpstreamCredentialsOptions> credentials)
    {
        id = Uri.UnescapeDataString(id);
        if (!await db.Models.AnyAsync(m => m.Id == id))
        {
            return Error(GatewayError.ModelNotFound(id));
        }
        var (offers, error) = BuildOffers(id, body?.Offers, credentials.Value);
        if (offers is null)
        {
            return Error(error);
        }
        string? prices = null;
        var pricesGiven = IsGiven(body!.Prices);
        if (pricesGiven)
        {
            if (!PricesJson.TryRead(body.Prices!.Value, "prices", out var read, out error))
            {
                return Error(error);
            }
            prices = PricesJson.ToStored(read);
        }
        if (body.MaxOutputTokens is < 1)
        {
            return Error(MaxOutputTokensInvalid());
        }
        var maxOutput = body.MaxOutputTokens;
        var ownedBy = string.IsNullOrWhiteSpace(body.OwnedBy) ? null : body.OwnedBy.Trim();
        var row = await catalog.ReplaceModelAsync(id, offers, m =>
        {
            if (pricesGiven)
            {
                m.Prices = prices;
            }
            if (maxOutput is { } max)
            {
                m.MaxOutputTokens = max;
            }
            if (ownedBy is not null)
            {
                m.OwnedBy = ownedBy;
            }
        });
        return row is null ? Error(GatewayError.ModelNotFound(id)) : Json(ToDto(row), AdminJsonContext.Default.ModelDto);
    }

    private static async Task<IResult> DeleteModelAsync(string id, CatalogStore catalog)
    {
        id = Uri.UnescapeDataString(id);
        return await catalog.DeleteModelAsync(id) ? TypedResults.NoContent() : Error(GatewayError.ModelNotFound(id));
    }

    private static (List<ModelOfferEntity>? Offers, GatewayError Error) BuildOffers(string modelId, OfferRequest[]? requests, UpstreamCredentialsOptions credentials)
    {
        if (requests is null || requests.Length == 0)
        {
            return (null, GatewayError.InvalidRequest("'offers' must list at least one offer.", "offers"));
        }
        var offers = new List<ModelOfferEntity>();
        for (var i = 0; i < requests.Length; i++)
        {
            var r = requests[i];
            var capacity = r?.Capacity ?? "hosted";
            if (capacity is not ("hosted" or "marketplace"))
            {
                return (null, GatewayError.InvalidRequest("'capacity' must be 'hosted' or 'marketplace'.", $"offers[{i}].capacity"));
            }
            string? prices = null;
            if (IsGiven(r?.Prices))
            {
                if (!PricesJson.TryRead(r!.Prices!.Value, $"offers[{i}].prices", out var read, out var pricesError))
                {
                    return (null, pricesError);
                }
                prices = PricesJson.ToStored(read);
            }
            if (r is { Runtime: { Length: > 0 } runtimeId })
            {
                if (string.IsNullOrWhiteSpace(r.UpstreamModel))
                {
                    return (null, GatewayError.InvalidRequest("'upstream_model' names the runtime's model and is required.", $"offers[{i}].upstream_model"));
                }
                if (r.ServesResponses == true)
                {
                    return (null, GatewayError.InvalidRequest("'serves_responses' is for upstream offers; a runtime is served the chat task.", $"offers[{i}].serves_responses"));
                }
                offers.Add(new ModelOfferEntity
                {
                    Id = ApiKeySecrets.NewId("off_"),
                    ModelId = modelId,
                    Task = string.IsNullOrWhiteSpace(r.Task) ? null : r.Task.Trim(),
                    Kind = OfferKinds.Runtime,
                    BaseUrl = "",
                    RuntimeId = runtimeId,
                    UpstreamModel = r.UpstreamModel.Trim(),
                    Priority = r.Priority ?? i,
                    TimeoutSeconds = r.TimeoutSeconds,
                    Capacity = capacity,
                    Prices = prices,
                });
                continue;
            }
            if (r is null || !Uri.TryCreate(r.BaseUrl, UriKind.Absolute, out var baseUrl) || (baseUrl.Scheme != Uri.UriSchemeHttp && baseUrl.Scheme != Uri.UriSchemeHttps))
            {
                return (null, GatewayError.InvalidRequest("'base_url' must be an absolute http(s) URL.", $"offers[{i}].base_url"));
            }
            if (string.IsNullOrWhiteSpace(r.UpstreamModel))
            {
                return (null, GatewayError.InvalidRequest("'upstream_model' is required.", $"offers[{i}].upstream_model"));
            }
            if (!credentials.AllowLinkLocalUpstreams && UpstreamAddressPolicy.IsLinkLocalOrMetadata(baseUrl))
            {
                return (null, GatewayError.InvalidRequest(
                    $"'base_url' points at a link-local or cloud metadata address ({baseUrl.IdnHost}); set Lattice:AllowLinkLocalUpstreams to allow it.", $"offers[{i}].base_url"));
            }
            if (r.Credential is not null && !credentials.Credentials.ContainsKey(r.Credential))
            {
                return (null, GatewayError.InvalidRequest($"No credential named '{r.Credential}' is configured (Lattice:Credentials:{r.Credential}).", $"offers[{i}].credential"));
            }
            if (r.Credential is not null && !UpstreamAddressPolicy.MaySend(credentials, r.Credential, baseUrl))
            {
                return (null, GatewayError.InvalidRequest(
                    $"The credential '{r.Credential}' is bound to {string.Join(", ", credentials.CredentialHosts[r.Credential])} (Lattice:CredentialHosts:{r.Credential}), not {baseUrl.Authority}.",
                    $"offers[{i}].credential"));
            }
            if (r.TimeoutSeconds is <= 0 or > 3600)
            {
                return (null, GatewayError.InvalidRequest("'timeout_seconds' must be between 1 and 3600.", $"offers[{i}].timeout_seconds"));
            }
            var kind = r.Kind ?? OfferKinds.Upstream;
            if (kind is not (OfferKinds.Upstream or OfferKinds.Anthropic))
            {
                return (null, GatewayError.InvalidRequest("'kind' must be 'upstream' (an OpenAI-compatible API) or 'anthropic' (Anthropic's Messages API).", $"offers[{i}].kind"));
            }
            offers.Add(new ModelOfferEntity
            {
                Id = ApiKeySecrets.NewId("off_"),
                ModelId = modelId,
                Task = string.IsNullOrWhiteSpace(r.Task) ? null : r.Task.Trim(),
                Kind = kind,
                BaseUrl = baseUrl.ToString(),
                CredentialName = r.Credential,
                UpstreamModel = r.UpstreamModel.Trim(),
                Priority = r.Priority ?? i,
                TimeoutSeconds = r.TimeoutSeconds,
                Capacity = capacity,
                Prices = prices,
                ServesResponses = r.ServesResponses ?? false,
            });
        }
        return (offers, default);
    }

    private static ModelDto ToDto(CatalogModelEntity m) => new(
        m.Id, m.OwnedBy, m.CreatedAt.ToUnixTimeSeconds(), StoredPrices(m.Prices),
        m.Offers.OrderBy(o => o.Priority).Select(o => new OfferDto(o.Id, o.Task, o.Kind, o.RuntimeId is null ? o.BaseUrl : null, o.RuntimeId, o.CredentialName, o.UpstreamModel, o.Priority, o.TimeoutSeconds, o.Capacity, StoredPrices(o.Prices), o.ServesResponses)).ToArray(),
        m.MaxOutputTokens);

    private static GatewayError MaxOutputTokensInvalid() =>
        GatewayError.InvalidRequest("'max_output_tokens' must be a positive whole number.", "max_output_tokens");

    // ---- results ----

    internal static IResult Error(GatewayError error) => OpenAiErrors.Result(error);

    internal static IResult Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, int status = StatusCodes.Status200OK) =>
        TypedResults.Json(value, type, statusCode: status);
}

using Lattice.Gateway.Changes;
using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Cluster;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Runtimes;

/// <summary>Personal runtime records, pairing, and the daemons' WebSocket link.</summary>
public static partial class RuntimeEndpoints
{
    public static readonly TimeSpan BootstrapLifetime = TimeSpan.FromMinutes(30);

    public static IServiceCollection AddRuntimes(this IServiceCollection services)
    {
        services.AddOptions<RuntimeOptions>().BindConfiguration(RuntimeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RuntimeRegistry>();
        services.AddSingleton<RuntimeStore>();
        services.AddChangeHandler<RuntimeStore>();
        services.AddSingleton<RuntimeTarget>();
        services.AddScoped<RuntimeRevoker>();
        return services;
    }

    public static IEndpointRouteBuilder MapRuntimes(this IEndpointRouteBuilder routes)
    {
        routes.MapPost("/v1/personal-runtimes", CreateAsync).Describe("Personal runtimes", "CreatePersonalRuntime", "Create a personal runtime and its one-time pairing token");
        routes.MapGet("/v1/personal-runtimes", ListAsync).Describe("Personal runtimes", "ListPersonalRuntimes", "List the personal runtimes the caller may use, with live status");
        routes.MapGet("/v1/personal-runtimes/{latticeId}", GetAsync).Describe("Personal runtimes", "GetPersonalRuntime", "Get one personal runtime and its live status");
        routes.MapPost("/v1/personal-runtimes/{latticeId}/revoke", RevokeAsync).Describe("Personal runtimes", "RevokePersonalRuntime", "Revoke a personal runtime (its link is cut)");
        routes.MapPost(RuntimeLink.PairPath, PairAsync).Describe("Runtime link", "PairRuntime", "Exchange a bootstrap token for a runtime credential (the daemon calls this)");
        routes.Map(RuntimeLink.ConnectPath, ConnectAsync);
        routes.MapGet(RuntimeLink.MePath, MeAsync).Describe("Runtime link", "GetRuntimeSelf", "The runtime record of the calling daemon");
        return routes;
    }

    // ---- records ----

    private static async Task CreateAsync(HttpContext context, LatticeDbContext db, RuntimeStore store, TimeProvider time, IOptions<RuntimeOptions> options)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.PersonalRuntimeManage) is not { } caller)
        {
            return;
        }
        var body = await ReadJsonAsync(context, RuntimeJsonContext.Default.CreateRuntimeRequest);
        if (body is null)
        {
            return;
        }
        var max = options.Value.MaxPerWorkspace;
        if (await db.Runtimes.CountAsync(r => r.WorkspaceId == caller.WorkspaceId && !r.Hosted && r.RevokedAt == null) >= max)
        {
            await OpenAiErrors.WriteAsync(context, LimitReached(max));
            return;
        }
        var created = await CreateRecordAsync(store, time, caller.WorkspaceId, body, hosted: false, ownerUserId: caller.UserId);
        if (created.Error is { } error)
        {
            await OpenAiErrors.WriteAsync(context, error);
            return;
        }
        var registry = context.RequestServices.GetRequiredService<RuntimeRegistry>();
        await WriteAsync(context, new CreatedRuntimeDto(ToDto(created.Entity!, registry), created.Token!, created.Entity!.BootstrapExpiresAt!.Value),
            RuntimeJsonContext.Default.CreatedRuntimeDto, StatusCodes.Status201Created);
    }

    /// <summary>Creates a runtime record with a one-time bootstrap token. Shared with the admin API (hosted runtimes).</summary>
    public static async Task<(RuntimeEntity? Entity, string? Token, GatewayError? Error)> CreateRecordAsync(
        RuntimeStore store, TimeProvider time, string workspaceId, CreateRuntimeRequest body, bool hosted, string? ownerUserId = null)
    {
        var name = body.DisplayName?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 200)
        {
            return (null, null, GatewayError.InvalidRequest("'displayName' is required (1 to 200 characters).", "displayName"));
        }
        var backend = body.ExecutionBackend ?? "local-model";
        if (backend is not ("local-model" or "assistant-runtime"))
        {
            return (null, null, GatewayError.InvalidRequest("'executionBackend' must be 'local-model' or 'assistant-runtime'.", "executionBackend"));
        }
        var now = time.GetUtcNow();
        var token = ApiKeySecrets.NewSecret(RuntimeLink.BootstrapPrefix);
        var entity = new RuntimeEntity
        {
            LatticeId = ApiKeySecrets.NewId(ModelId.LatticeIdPrefix).ToLowerInvariant(),
            WorkspaceId = workspaceId,
            DisplayName = name,
            ExecutionBackend = backend,
            Hosted = hosted,
            OwnerUserId = ownerUserId,
            BootstrapTokenHash = ApiKeySecrets.Hash(token),
            BootstrapExpiresAt = now + BootstrapLifetime,
            CreatedAt = now,
            UpdatedAt = now,
        };
        await store.AddAsync(entity);
        return (entity, token, null);
    }

    private static async Task ListAsync(HttpContext context, LatticeDbContext db, RuntimeRegistry registry, LinkLeases leases)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.Inference, Scopes.PersonalRuntimeManage) is not { } caller)
        {
            return;
        }
        var rows = await db.Runtimes.AsNoTracking().VisibleTo(caller).ToListAsync();
        var elsewhere = await LinkedElsewhereAsync(rows, registry, leases);
        var list = rows.OrderBy(r => r.CreatedAt).Select(r => ToDto(r, registry, elsewhere.GetValueOrDefault(r.LatticeId))).ToList();
        await WriteAsync(context, new RuntimeListDto(list), RuntimeJsonContext.Default.RuntimeListDto);
    }

    /// <summary>
    /// The links other nodes hold for those of <paramref name="rows"/> that could be linked but are not linked here, as
    /// their leases say: one Redis round trip for the lot, none when every such runtime is linked to this node.
    /// </summary>
    private static async ValueTask<IReadOnlyDictionary<string, RemoteLink>> LinkedElsewhereAsync(IReadOnlyCollection<RuntimeEntity> rows,
        RuntimeRegistry registry, LinkLeases leases)
    {
        if (!leases.Enabled)
        {
            return NoRemoteLinks;
        }
        var ids = rows.Where(r => r.RevokedAt is null && r.CredentialHash is not null && registry.Find(r.LatticeId) is null)
            .Select(r => r.LatticeId).ToList();
        return ids.Count == 0 ? NoRemoteLinks : await leases.FindManyAsync(ids);
    }

    private static readonly IReadOnlyDictionary<string, RemoteLink> NoRemoteLinks = new Dictionary<string, RemoteLink>();

    private static async Task GetAsync(HttpContext context, string latticeId, LatticeDbContext db, RuntimeRegistry registry, LinkLeases leases)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.Inference, Scopes.PersonalRuntimeManage) is not { } caller)
        {
            return;
        }
        var row = await db.Runtimes.AsNoTracking().VisibleTo(caller).FirstOrDefaultAsync(r => r.LatticeId == latticeId);
        if (row is null)
        {
            await OpenAiErrors.WriteAsync(context, NotFound(latticeId));
            return;
        }
        await WriteAsync(context, await ToDtoAsync(row, registry, leases), RuntimeJsonContext.Default.RuntimeDto);
    }

    private static async Task RevokeAsync(HttpContext context, string latticeId, LatticeDbContext db, RuntimeRegistry registry, RuntimeRevoker revoker)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.PersonalRuntimeManage) is not { } caller)
        {
            return;
        }
        var row = await db.Runtimes.VisibleTo(caller).FirstOrDefaultAsync(r => r.LatticeId == latticeId);
        if (row is null)
        {
            await OpenAiErrors.WriteAsync(context, NotFound(latticeId));
            return;
        }
        await revoker.RevokeAsync(row);
        await WriteAsync(context, ToDto(row, registry), RuntimeJsonContext.Default.RuntimeDto);
    }

    /// <summary>The workspace has as many personal runtimes as <see cref="RuntimeOptions.MaxPerWorkspace"/> allows.</summary>
    public static GatewayError LimitReached(int max) =>
        new(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.RuntimeLimitReached,
            $"This workspace already has {max} personal runtimes, the most it may have; revoke one first.", null);

    public static GatewayError NotFound(string latticeId) =>
        new(StatusCodes.Status404NotFound, ErrorTypes.InvalidRequest, ErrorCodes.PersonalLatticeNotFound,
            $"The personal runtime '{latticeId}' does not exist.", null);

    /// <summary>
    /// The record and live status of a runtime: <c>reachable</c> when its link is on this node or another node holds a
    /// live lease on it (<paramref name="elsewhere"/>, from <see cref="LinkLeases"/>), so every node answers the same.
    /// </summary>
    public static RuntimeDto ToDto(RuntimeEntity r, RuntimeRegistry registry, RemoteLink? elsewhere = null)
    {
        var hello = registry.Find(r.LatticeId)?.Hello ?? elsewhere?.Hello;
        var status = r.RevokedAt is not null ? "revoked"
            : r.CredentialHash is null ? "unpaired"
            : hello is not null ? "reachable"
            : "offline";
        var capabilities = hello?.Capabilities.Select(c => new RuntimeCapabilityDto(c.Task, c.Model, c.Engine)).ToList();
        return new RuntimeDto(r.LatticeId, r.WorkspaceId, r.DisplayName, r.ExecutionBackend, status, r.Hosted,
            ModelId.PersonalPrefix + r.LatticeId, r.CreatedAt, r.UpdatedAt, r.LastSeenAt, r.RevokedAt, r.PublicWorkKey, capabilities);
    }

    /// <summary><see cref="ToDto"/> for one record, reading its lease when its link is not on this node.</summary>
    private static async ValueTask<RuntimeDto> ToDtoAsync(RuntimeEntity r, RuntimeRegistry registry, LinkLeases leases) =>
        ToDto(r, registry, r.RevokedAt is null && r.CredentialHash is not null && registry.Find(r.LatticeId) is null
            ? await leases.FindAsync(r.LatticeId) : null);

    // ---- pairing ----

    private static async Task PairAsync(HttpContext context, LatticeDbContext db, TimeProvider time, IOptions<RuntimeOptions> options)
    {
        var body = await ReadJsonAsync(context, RuntimeJsonContext.Default.PairRequest);
        if (body is null)
        {
            return;
        }
        // The bootstrap token is this route's credential: without one (or with something far too long to be one)
        // the answer is 401 like every other route's missing credential, not a validation error.
        if (string.IsNullOrEmpty(body.BootstrapToken))
        {
            await RefuseAsync(context, "A bootstrap token ('bootstrapToken', lbt_…) is required.");
            return;
        }
        if (body.BootstrapToken.Length > 200)
        {
            await RefuseAsync(context, "The bootstrap token is unknown, already used, or expired.");
            return;
        }
        var hash = ApiKeySecrets.Hash(body.BootstrapToken);
        var now = time.GetUtcNow();
        var row = await db.Runtimes.FirstOrDefaultAsync(r => r.BootstrapTokenHash == hash);
        if (row is null || row.RevokedAt is not null || row.BootstrapExpiresAt is null || row.BootstrapExpiresAt <= now)
        {
            await RefuseAsync(context, "The bootstrap token is unknown, already used, or expired.");
            return;
        }
        // Records made before the limit was lowered stay, but no more of them get links.
        var max = options.Value.MaxPerWorkspace;
        if (!row.Hosted && await db.Runtimes.CountAsync(r => r.WorkspaceId == row.WorkspaceId && !r.Hosted && r.RevokedAt == null && r.CredentialHash != null) >= max)
        {
            await OpenAiErrors.WriteAsync(context, LimitReached(max));
            return;
        }
        var credential = ApiKeySecrets.NewSecret(RuntimeLink.CredentialPrefix);
        row.CredentialHash = ApiKeySecrets.Hash(credential);
        row.BootstrapTokenHash = null;
        row.BootstrapExpiresAt = null;
        row.PairedAt = now;
        row.UpdatedAt = now;
        // Nothing routing holds changes (the credential is checked against the database), so nothing is published.
        await db.SaveChangesAsync();
        await WriteAsync(context, new PairResponse(row.LatticeId, credential, ModelId.PersonalPrefix + row.LatticeId), RuntimeJsonContext.Default.PairResponse);
    }

    /// <summary>A daemon asks who it is (for <c>lattice ping</c>): its record, by its runtime credential.</summary>
    private static async Task MeAsync(HttpContext context, LatticeDbContext db, RuntimeRegistry registry, LinkLeases leases)
    {
        var row = await FindByCredentialAsync(context, db);
        if (row is null)
        {
            return;
        }
        await WriteAsync(context, await ToDtoAsync(row, registry, leases), RuntimeJsonContext.Default.RuntimeDto);
    }

    private static async Task<RuntimeEntity?> FindByCredentialAsync(HttpContext context, LatticeDbContext db)
    {
        var authorization = context.Request.Headers.Authorization.ToString();
        if (!authorization.StartsWith("Bearer " + RuntimeLink.CredentialPrefix, StringComparison.Ordinal))
        {
            await RefuseAsync(context, "A runtime credential (Bearer lrt_…) is required.");
            return null;
        }
        // A credential longer than any the gateway issues is simply not one (and is never hashed).
        var presented = authorization.AsSpan("Bearer ".Length).Trim();
        Span<char> hex = stackalloc char[64];
        if (presented.Length > MaxCredentialLength || !ApiKeySecrets.HashInto(presented, hex))
        {
            await RefuseAsync(context, "The runtime credential is invalid or revoked.");
            return null;
        }
        var hash = new string(hex);
        var row = await db.Runtimes.FirstOrDefaultAsync(r => r.CredentialHash == hash);
        if (row is null || row.RevokedAt is not null)
        {
            await RefuseAsync(context, "The runtime credential is invalid or revoked.");
            return null;
        }
        return row;
    }

    /// <summary>Longer than any runtime credential the gateway issues.</summary>
    private const int MaxCredentialLength = 200;

    /// <summary>
    /// A 401 for a bad bootstrap token or runtime credential, counted like every failed authentication (429 once the
    /// source is over its limit).
    /// </summary>
    private static async Task RefuseAsync(HttpContext context, string message)
    {
        GatewayError error;
        try
        {
            error = await context.RequestServices.GetRequiredService<IFailedAuthLimiter>().RecordFailureAsync(context)
                ? GatewayError.Unauthenticated(message)
                : EndpointAuth.ErrorFor(AuthFailure.TooManyFailures);
        }
        catch (Persistence.SharedCountersUnavailableException)
        {
            error = GatewayError.CountersUnavailable();
        }
        await OpenAiErrors.WriteAsync(context, error);
    }

    // ---- the link ----

    private static async Task ConnectAsync(HttpContext context, IServiceScopeFactory scopes, RuntimeRegistry registry, TimeProvider time,
        IHostApplicationLifetime lifetime, ILoggerFactory loggers)
    {
        var logger = loggers.CreateLogger("Lattice.Gateway.Runtimes.Link");
        // The link lives for hours: no DbContext is held for its lifetime, only short scopes when it starts and ends.
        RuntimeEntity? row;
        await using (var scope = scopes.CreateAsyncScope())
        {
            row = await FindByCredentialAsync(context, scope.ServiceProvider.GetRequiredService<LatticeDbContext>());
        }
        if (row is null)
        {
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.InvalidRequest("This endpoint only accepts a WebSocket upgrade.", null));
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { DangerousEnableCompression = false, KeepAliveInterval = TimeSpan.Zero });
        var hello = await ReceiveHelloAsync(socket, lifetime.ApplicationStopping);
        if (hello is null)
        {
            await CloseAsync(socket, System.Net.WebSockets.WebSocketCloseStatus.ProtocolError, "expected a hello frame");
            return;
        }

        var (latticeId, workspaceId, hosted) = (row.LatticeId, row.WorkspaceId, row.Hosted);
        row = null; // the link lives for hours: keep the three fields it needs, not the entity
        var connection = new RuntimeConnection(socket, latticeId, workspaceId, hosted, hello, time, logger);
        // Registered before the welcome, so a daemon that has been welcomed is always routable. Frames queued
        // meanwhile wait for the connection's sender, which starts after the welcome went out.
        registry.Add(connection);
        try
        {
            // The credential was checked before the hello, which may take seconds to come: check it again now that the
            // link is registered. A revocation committed before this read is seen here; one committed after it cuts the
            // registered link (on this node at once, on others from the change feed).
            if (!await StillLiveAsync(scopes, latticeId))
            {
                LogRevokedDuringHello(logger, latticeId);
                registry.Remove(connection);
                await CloseAsync(socket, System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation, "runtime credential revoked");
                return;
            }
            // Stored before the welcome, so a daemon that has been welcomed has its work key in its record.
            await TouchAsync(scopes, latticeId, time, hello.PublicWorkKey);
            // Recorded before the welcome, so a daemon that has been welcomed is routable from every node.
            await registry.AnnounceAsync(connection);
            await socket.SendAsync(Frame.Json(FrameType.Welcome, 0, connection.Welcome(), ProtocolJsonContext.Default.WelcomeMessage), System.Net.WebSockets.WebSocketMessageType.Binary, true, lifetime.ApplicationStopping);

            LogConnected(logger, latticeId, hello.Capabilities.Count);
            await connection.RunAsync(lifetime.ApplicationStopping);
        }
        finally
        {
            registry.Remove(connection);
            connection.Abort();
            await registry.WithdrawAsync(connection);
            await TouchAsync(scopes, latticeId, time);
        }
    }

    private static async Task<bool> StillLiveAsync(IServiceScopeFactory scopes, string latticeId)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.Runtimes.AsNoTracking().AnyAsync(r => r.LatticeId == latticeId && r.RevokedAt == null);
    }

    /// <summary>Records that the runtime was seen; with <paramref name="publicWorkKey"/>, also the work key its hello announced.</summary>
    private static async Task TouchAsync(IServiceScopeFactory scopes, string latticeId, TimeProvider time, string? publicWorkKey = null)
    {
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var now = time.GetUtcNow();
            var runtime = db.Runtimes.Where(r => r.LatticeId == latticeId);
            if (publicWorkKey is null)
            {
                await runtime.ExecuteUpdateAsync(u => u.SetProperty(r => r.LastSeenAt, now), CancellationToken.None);
            }
            else
            {
                await runtime.ExecuteUpdateAsync(u => u.SetProperty(r => r.LastSeenAt, now).SetProperty(r => r.PublicWorkKey, publicWorkKey), CancellationToken.None);
            }
        }
        catch (DbUpdateException)
        {
            // Presence is best effort; the live status comes from the registry.
        }
    }

    private static async Task<HelloMessage?> ReceiveHelloAsync(System.Net.WebSockets.WebSocket socket, CancellationToken stopping)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        // A hello is a few hundred bytes: read it into a small pooled buffer, grown up to HelloMaxBytes only for a
        // large one (a thousand daemons connecting at once must not each allocate the maximum).
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(4 * 1024);
        var length = 0;
        try
        {
            try
            {
                System.Net.WebSockets.ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        if (buffer.Length >= HelloMaxBytes)
                        {
                            return null;
                        }
                        var bigger = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, HelloMaxBytes));
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                    result = await socket.ReceiveAsync(buffer.AsMemory(length, Math.Min(buffer.Length, HelloMaxBytes) - length), timeout.Token);
                    if (result.MessageType == System.Net.WebSockets.WebSocketMessageType.Close)
                    {
                        return null;
                    }
                    length += result.Count;
                }
                while (!result.EndOfMessage);
            }
            catch (Exception ex) when (ex is OperationCanceledException or System.Net.WebSockets.WebSocketException)
            {
                return null;
            }
            if (!Frame.TryRead(buffer.AsMemory(0, length), out var type, out _, out var payload) || type != FrameType.Hello)
            {
                return null;
            }
            var hello = Frame.ReadJson(payload, ProtocolJsonContext.Default.HelloMessage);
            // A work key that is not a P-256 point makes the hello invalid; older daemons send none.
            return hello is { Capabilities: not null, RuntimeVersion: not null } && (hello.PublicWorkKey is null || WorkKey.ParsePublic(hello.PublicWorkKey) is not null) ? hello : null;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private const int HelloMaxBytes = RuntimeLinkLimits.MaxFrameBytes;

    private static async Task CloseAsync(System.Net.WebSockets.WebSocket socket, System.Net.WebSockets.WebSocketCloseStatus status, string reason)
    {
        // A peer that never answers the close does not hold the request open.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await socket.CloseAsync(status, reason, timeout.Token);
        }
        catch (Exception ex) when (ex is System.Net.WebSockets.WebSocketException or IOException or OperationCanceledException)
        {
        }
    }

    // ---- helpers ----

    private static async Task<T?> ReadJsonAsync<T>(HttpContext context, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            var body = await JsonSerializer.DeserializeAsync(context.Request.Body, type, context.RequestAborted);
            if (body is null)
            {
                await OpenAiErrors.WriteAsync(context, GatewayError.InvalidJson("The body must be a JSON object."));
            }
            return body;
        }
        catch (JsonException ex)
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.InvalidJson(ex.Message));
            return null;
        }
    }

    private static Task WriteAsync<T>(HttpContext context, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, int status = StatusCodes.Status200OK)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, value, type, context.RequestAborted);
    }

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Runtime {LatticeId} connected with {Capabilities} capabilities")]
    private static partial void LogConnected(ILogger logger, string latticeId, int capabilities);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "Runtime {LatticeId} was revoked before its hello arrived; the link is closed")]
    private static partial void LogRevokedDuringHello(ILogger logger, string latticeId);
}

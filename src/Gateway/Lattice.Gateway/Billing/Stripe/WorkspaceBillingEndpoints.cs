using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Lattice.Gateway.Auth;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>
/// <c>GET</c> and <c>PUT /admin/v1/workspaces/{workspaceId}/billing</c>: the Stripe customer a workspace's usage is
/// recorded on. The operator's only (<c>lattice:admin</c>): who pays is not the workspace's own choice.
/// </summary>
public static partial class WorkspaceBillingEndpoints
{
    public static IEndpointRouteBuilder MapWorkspaceBilling(this IEndpointRouteBuilder routes)
    {
        var admin = routes.MapGroup("/admin/v1").RequireScope(Scopes.Admin);
        admin.MapGet("/workspaces/{workspaceId}/billing", GetAsync).Describe("Admin: billing", "GetWorkspaceBilling", "A workspace's billing settings (Stripe customer)");
        admin.MapPut("/workspaces/{workspaceId}/billing", SetAsync).Describe("Admin: billing", "SetWorkspaceBilling", "Set a workspace's billing settings");
        return routes;
    }

    private static async Task<IResult> GetAsync(string workspaceId, LatticeDbContext db)
    {
        if (await db.Workspaces.FindAsync(workspaceId) is not { } ws)
        {
            return OpenAiErrors.Result(Admin.AdminEndpoints.WorkspaceNotFound(workspaceId));
        }
        return Result(ws);
    }

    private static async Task<IResult> SetAsync(string workspaceId, JsonElement? body, LatticeDbContext db)
    {
        if (await db.Workspaces.FindAsync(workspaceId) is not { } ws)
        {
            return OpenAiErrors.Result(Admin.AdminEndpoints.WorkspaceNotFound(workspaceId));
        }
        if (body is not { ValueKind: JsonValueKind.Object } settings)
        {
            return OpenAiErrors.Result(GatewayError.InvalidRequest("The body must be an object: {\"stripe_customer_id\": \"cus_…\"} (null to stop billing through Stripe).", null, ErrorCodes.InvalidType));
        }
        foreach (var property in settings.EnumerateObject())
        {
            if (property.Name != "stripe_customer_id")
            {
                return OpenAiErrors.Result(GatewayError.InvalidRequest($"Unknown parameter '{property.Name}'.", property.Name, ErrorCodes.UnknownParameter));
            }
        }
        if (!settings.TryGetProperty("stripe_customer_id", out var customer))
        {
            return OpenAiErrors.Result(GatewayError.InvalidRequest("'stripe_customer_id' is required (null to stop billing through Stripe).", "stripe_customer_id", ErrorCodes.MissingRequiredParameter));
        }
        if (customer.ValueKind != JsonValueKind.Null && (customer.ValueKind != JsonValueKind.String || !CustomerId().IsMatch(customer.GetString()!)))
        {
            return OpenAiErrors.Result(GatewayError.InvalidRequest("'stripe_customer_id' must be a Stripe customer id (cus_ followed by letters and digits) or null.", "stripe_customer_id"));
        }
        ws.StripeCustomerId = customer.ValueKind == JsonValueKind.Null ? null : customer.GetString();
        await db.SaveChangesAsync();
        return Result(ws);
    }

    private static IResult Result(WorkspaceEntity ws) =>
        TypedResults.Json(new WorkspaceBillingDto(ws.Id, ws.StripeCustomerId), WorkspaceBillingJsonContext.Default.WorkspaceBillingDto);

    [GeneratedRegex("^cus_[A-Za-z0-9]{1,250}$")]
    private static partial Regex CustomerId();
}

public sealed record WorkspaceBillingDto(string WorkspaceId, string? StripeCustomerId)
{
    [JsonPropertyOrder(-1)]
    public string Object => "workspace.billing";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(WorkspaceBillingDto))]
internal sealed partial class WorkspaceBillingJsonContext : JsonSerializerContext;

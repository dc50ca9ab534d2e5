using System.Globalization;
using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>
/// <c>GET /v1/invoices</c>, <c>GET /v1/invoices/{id}</c> and <c>GET /v1/invoices/{id}/lines.csv</c>. Needs
/// <c>lattice:compute:usage:read</c> on a developer key: an invoice is the workspace's, so an OAuth access token (an
/// app acting for one user) is refused whatever its scopes — unless it also manages the workspace
/// (<c>lattice:workspace:admin</c>, which only an owner signed in to the console holds), as for the usage API. Another
/// workspace's invoice id is a 404.
/// </summary>
public static class InvoiceEndpoints
{
    public static IEndpointRouteBuilder MapInvoiceRoutes(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/v1/invoices", ListAsync).Describe("Invoices", "ListInvoices", "The workspace's invoices");
        routes.MapGet("/v1/invoices/{id}", GetAsync).Describe("Invoices", "GetInvoice", "One invoice with its lines");
        routes.MapGet("/v1/invoices/{id}/lines.csv", GetCsvAsync).Describe("Invoices", "GetInvoiceLinesCsv", "An invoice's lines as CSV");
        return routes;
    }

    /// <summary>The caller when it may read invoices; null after the error was written.</summary>
    private static async ValueTask<Caller?> AuthorizeAsync(HttpContext context)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.UsageRead) is not { } caller)
        {
            return null;
        }
        if (!Metering.UsageEndpoints.SeesWholeWorkspace(caller))
        {
            await OpenAiErrors.WriteAsync(context, new GatewayError(StatusCodes.Status403Forbidden, ErrorTypes.Permission, ErrorCodes.InsufficientScopes,
                $"Invoices belong to the workspace: read them with a developer key that has {Scopes.UsageRead}, not with an OAuth access token."));
            return null;
        }
        return caller;
    }

    private static async Task<IResult> ListAsync(HttpContext context, InvoiceBook book)
    {
        if (await AuthorizeAsync(context) is not { } caller)
        {
            return TypedResults.Empty;
        }
        var invoices = await book.ListAsync(caller.WorkspaceId, context.RequestAborted);
        return TypedResults.Json(new InvoiceListDto(invoices), InvoiceJsonContext.Default.InvoiceListDto);
    }

    private static async Task<IResult> GetAsync(HttpContext context, string id, InvoiceBook book)
    {
        if (await AuthorizeAsync(context) is not { } caller)
        {
            return TypedResults.Empty;
        }
        if (InvoiceBook.PeriodOf(id, caller.WorkspaceId) is not { } period)
        {
            return OpenAiErrors.Result(NotFound(id));
        }
        return TypedResults.Json(await book.GetAsync(caller.WorkspaceId, period, context.RequestAborted), InvoiceJsonContext.Default.InvoiceDto);
    }

    private static async Task<IResult> GetCsvAsync(HttpContext context, string id, InvoiceBook book)
    {
        if (await AuthorizeAsync(context) is not { } caller)
        {
            return TypedResults.Empty;
        }
        if (InvoiceBook.PeriodOf(id, caller.WorkspaceId) is not { } period)
        {
            return OpenAiErrors.Result(NotFound(id));
        }
        var invoice = await book.GetAsync(caller.WorkspaceId, period, context.RequestAborted);
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"{invoice.Id}.csv\"";
        return TypedResults.Text(InvoiceCsv.Write(invoice.Lines), "text/csv; charset=utf-8");
    }

    private static GatewayError NotFound(string id) => GatewayError.NotFound($"The invoice '{id}' does not exist.");
}

/// <summary>An invoice's lines as CSV (RFC 4180): one row per line, amounts and prices as exact decimal strings.</summary>
public static class InvoiceCsv
{
    public const string Header = "model,task,requests,input_tokens,cached_input_tokens,output_tokens,audio_seconds,"
        + "input_per_mtok,cached_input_per_mtok,output_per_mtok,audio_per_minute,per_request,amount_usd";

    public static string Write(IEnumerable<InvoiceLineDto> lines)
    {
        var csv = new StringBuilder(Header).Append("\r\n");
        foreach (var line in lines)
        {
            var q = line.Quantities;
            var p = line.UnitPrices;
            string[] cells =
            [
                line.Model, line.Task, Number(q.Requests), Number(q.InputTokens), Number(q.CachedInputTokens), Number(q.OutputTokens),
                q.AudioSeconds.ToString(CultureInfo.InvariantCulture),
                Price(p?.InputPerMTok), Price(p?.CachedInputPerMTok), Price(p?.OutputPerMTok), Price(p?.AudioPerMinute), Price(p?.PerRequest),
                line.AmountUsd,
            ];
            csv.AppendJoin(',', cells.Select(Escape)).Append("\r\n");
        }
        return csv.ToString();
    }

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Price(decimal? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "";

    private static string Escape(string cell) =>
        cell.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + cell.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : cell;
}

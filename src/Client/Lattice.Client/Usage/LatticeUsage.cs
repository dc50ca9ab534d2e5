using System.Globalization;
using System.Text;
using Lattice.Client.Json;

namespace Lattice.Client;

/// <summary>What requests used and cost (needs <c>lattice:compute:usage:read</c>). A developer key sees its workspace's records, an access token its own grant's.</summary>
public class LatticeUsage
{
    private readonly LatticeClient _client;

    internal LatticeUsage(LatticeClient client) => _client = client;

    /// <summary>For mocks.</summary>
    protected LatticeUsage() => _client = null!;

    /// <summary>One page of per-request records, newest first (<c>GET /v1/usage/requests</c>).</summary>
    public virtual Task<UsageRequestPage> ListRequestsAsync(UsageRequestQuery? query = null, CancellationToken cancellationToken = default)
    {
        query ??= new UsageRequestQuery();
        var path = new StringBuilder("v1/usage/requests");
        var first = true;
        Add(path, ref first, "limit", query.Limit?.ToString(CultureInfo.InvariantCulture));
        Add(path, ref first, "after", query.After);
        Add(path, ref first, "model", query.Model);
        Add(path, ref first, "key_id", query.KeyId);
        Add(path, ref first, "status", query.Status);
        Add(path, ref first, "surface", query.Surface);
        return _client.GetAsync(path.ToString(), OpenAiJsonContext.Default.UsageRequestPage, cancellationToken);
    }

    /// <summary>The record of request <paramref name="requestId"/>, found by paging back from the newest (null when it is not within <paramref name="maxPages"/> pages).</summary>
    public virtual async Task<UsageRequest?> FindRequestAsync(string requestId, int maxPages = 10, CancellationToken cancellationToken = default)
    {
        string? after = null;
        for (var page = 0; page < maxPages; page++)
        {
            var records = await ListRequestsAsync(new UsageRequestQuery { Limit = 100, After = after }, cancellationToken).ConfigureAwait(false);
            foreach (var record in records.Data)
            {
                if (record.RequestId == requestId)
                {
                    return record;
                }
            }
            if (!records.HasMore || records.Data.Count == 0)
            {
                return null;
            }
            after = records.Data[^1].RequestId;
        }
        return null;
    }

    /// <summary>Totals per time bucket (<c>GET /v1/usage</c>), in the shape of OpenAI's organization usage API.</summary>
    public virtual Task<UsagePage> GetTotalsAsync(UsageQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var path = new StringBuilder("v1/usage");
        var first = true;
        Add(path, ref first, "start_time", query.StartTime.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        Add(path, ref first, "end_time", query.EndTime?.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        Add(path, ref first, "bucket_width", query.BucketWidth);
        Add(path, ref first, "group_by", query.GroupBy is { Count: > 0 } groups ? string.Join(',', groups) : null);
        Add(path, ref first, "limit", query.Limit?.ToString(CultureInfo.InvariantCulture));
        Add(path, ref first, "page", query.Page);
        return _client.GetAsync(path.ToString(), OpenAiJsonContext.Default.UsagePage, cancellationToken);
    }

    private static void Add(StringBuilder path, ref bool first, string name, string? value)
    {
        if (value is null)
        {
            return;
        }
        path.Append(first ? '?' : '&').Append(name).Append('=').Append(Uri.EscapeDataString(value));
        first = false;
    }
}

using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>The stand-in's held requests (<c>standin-held-&lt;gate&gt;</c>): wait until some are held, let them go.</summary>
public sealed class StandInGate(string standInUrl)
{
    public string Name { get; } = "g" + Guid.NewGuid().ToString("N")[..12];

    public string UpstreamModel => "standin-held-" + Name;

    /// <summary>Waits until <paramref name="count"/> requests are held at the gate (a counter, not a clock).</summary>
    public async Task WaitHeldAsync(int count)
    {
        using var http = new HttpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            var state = await http.GetFromJsonAsync<JsonObject>($"{standInUrl}/_standin/held?gate={Name}", timeout.Token);
            if (state!["waiting"]!.GetValue<int>() >= count)
            {
                return;
            }
            await Task.Delay(10, timeout.Token);
        }
    }

    public async Task ReleaseAsync(int count = 1)
    {
        using var http = new HttpClient();
        using var response = await http.PostAsync($"{standInUrl}/_standin/release?gate={Name}&count={count}", null);
        response.EnsureSuccessStatusCode();
    }
}

using System.Text;
using Lattice.StandIn.OpenAi;

namespace Lattice.Gateway.Tests.Infrastructure;

/// <summary>
/// A stream that breaks in the middle, always: the stand-in aborts it only once the test has read the first words
/// through the gateway (a gate, not a delay), so the break can never overtake them on a loaded machine.
/// </summary>
public static class MidStreamBreak
{
    /// <summary>
    /// A model of its own whose stand-in stream breaks when <see cref="ReadAsync"/> opens its gate: the connection is
    /// closed, or with <paramref name="reset"/> reset (TCP RST).
    /// </summary>
    public static async Task<(string Model, string Gate)> ModelAsync(GatewayFixture gateway, bool reset = false)
    {
        var gate = "drop" + Guid.NewGuid().ToString("N")[..12];
        var model = "lovelace:drop-" + gate;
        await gateway.AddModelAsync(model, GatewayFixture.Offer(gateway.StandInUrl + "/v1", (reset ? "standin-reset-" : "standin-drop-") + gate));
        return (model, gate);
    }

    /// <summary>Sends <paramref name="request"/>, reads until a line contains <paramref name="marker"/>, lets the break happen and reads the rest.</summary>
    public static async Task<(HttpResponseMessage Response, string Body)> ReadAsync(HttpClient client, HttpRequestMessage request, string gate, string marker)
    {
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(20));
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var text = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            text.Append(line).Append('\n');
            if (line.Contains(marker, StringComparison.Ordinal))
            {
                break;
            }
        }
        StandInGates.Get(gate).Open();
        text.Append(await reader.ReadToEndAsync());
        return (response, text.ToString());
    }
}

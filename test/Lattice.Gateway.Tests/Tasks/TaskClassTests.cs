using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Tasks;

public abstract class TaskClassTests(GatewayFixture gateway)
{
    [Fact]
    public async Task A_task_class_added_through_the_admin_api_is_dispatchable_at_once()
    {
        var name = "text.reverse" + Guid.NewGuid().ToString("N")[..6];
        using var client = gateway.DevClient();
        using var before = await client.PostAsync($"/v1/tasks/{name}", new StringContent("""{"model":"lovelace:reverser","text":"abc"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.NotFound, before.StatusCode);

        await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/task-classes", JsonNode.Parse("""
            {"name":"NAME","streams":false,"content_type":"application/json","upstream_path":"custom/reverse",
             "input_schema":{"type":"object","required":["model","text"],"properties":{"model":{"type":"string"},"text":{"type":"string","maxLength":10}}}}
            """.Replace("NAME", name, StringComparison.Ordinal))!);
        await gateway.AddModelAsync("lovelace:reverser-" + name, GatewayFixture.Offer(gateway.StandInUrl + "/v1", "standin-reverser", task: name));

        const string body = """{"model":"lovelace:reverser-NAME","text":"abc","extra":{"kept":true}}""";
        using var ok = await client.PostAsync($"/v1/tasks/{name}", new StringContent(body.Replace("NAME", name), Encoding.UTF8, "application/json"));
        var text = await ok.Content.ReadAsStringAsync();
        Assert.True(ok.StatusCode == HttpStatusCode.OK, text);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal("standin.echo", doc.RootElement.GetProperty("object").GetString());
        Assert.Equal("/v1/custom/reverse", doc.RootElement.GetProperty("path").GetString());
        // The upstream got the client's bytes with its own model name; its answer (an echo, the body one object
        // down) names the model the client asked for, as every answer does.
        var last = await gateway.LastUpstreamRequestAsync("/v1/custom/reverse");
        Assert.Equal("""{"model":"standin-reverser","text":"abc","extra":{"kept":true}}""", Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>())));
        Assert.Equal("""{"model":"lovelace:reverser-NAME","text":"abc","extra":{"kept":true}}""".Replace("NAME", name, StringComparison.Ordinal), doc.RootElement.GetProperty("body").GetRawText());

        using var bad = await client.PostAsync($"/v1/tasks/{name}", new StringContent($$"""{"model":"lovelace:reverser-{{name}}","text":"far too long for it"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var error = JsonDocument.Parse(await bad.Content.ReadAsStringAsync());
        Assert.Equal("text", error.RootElement.GetProperty("error").GetProperty("param").GetString());

        using var missing = await client.PostAsync($"/v1/tasks/{name}", new StringContent($$"""{"model":"lovelace:reverser-{{name}}"}""", Encoding.UTF8, "application/json"));
        using var missingError = JsonDocument.Parse(await missing.Content.ReadAsStringAsync());
        Assert.Equal("text", missingError.RootElement.GetProperty("error").GetProperty("param").GetString());

        using var streaming = await client.PostAsync($"/v1/tasks/{name}", new StringContent($$"""{"model":"lovelace:reverser-{{name}}","text":"a","stream":true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, streaming.StatusCode);
    }

    [Fact]
    public async Task Built_in_task_classes_are_seeded_and_listed()
    {
        var list = JsonNode.Parse(await gateway.Admin.GetStringAsync("/admin/v1/task-classes"))!["data"]!.AsArray();
        var names = list.Select(t => t!["name"]!.GetValue<string>()).ToList();
        Assert.Contains("chat.completions", names);
        Assert.Contains("embeddings", names);
        Assert.Contains("audio.transcriptions", names);
        var chat = list.Single(t => t!["name"]!.GetValue<string>() == "chat.completions")!;
        Assert.True(chat["streams"]!.GetValue<bool>());
        Assert.Equal("usage", chat["usage_path"]!.GetValue<string>());
    }
}

[Collection(GatewayCollection.Name)]
public sealed class SqliteTaskClassTests(GatewayFixture gateway) : TaskClassTests(gateway);

[Collection(PostgresCollection.Name)]
public sealed class PostgresTaskClassTests(PostgresGatewayFixture gateway) : TaskClassTests(gateway), IClassFixture<PostgresGatewayFixture>;

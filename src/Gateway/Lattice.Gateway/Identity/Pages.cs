using System.Net;
using System.Text;
using Microsoft.AspNetCore.Antiforgery;

namespace Lattice.Gateway.Identity;

/// <summary>The few HTML pages a person sees: sign in, consent, and the device code form. Plain server-rendered HTML.</summary>
internal static class Pages
{
    /// <summary>What each Lattice scope lets an app do, in words a person can judge.</summary>
    public static readonly IReadOnlyDictionary<string, string> ScopeDescriptions = new Dictionary<string, string>
    {
        [Auth.Scopes.Inference] = "Run models on your compute and list your runtimes",
        [Auth.Scopes.Streaming] = "Open realtime connections",
        [Auth.Scopes.CatalogRead] = "See which models you can use",
        [Auth.Scopes.PersonalRuntimeManage] = "Create, pair and revoke your personal runtimes",
        [Auth.Scopes.UsageRead] = "Read your usage",
        [Auth.Scopes.WorkspaceOnly] = "Keep requests on your own workspace's capacity",
        [Auth.Scopes.Marketplace] = "Send requests to marketplace providers, billed to your workspace",
        [Auth.Scopes.WorkspaceAdmin] = "Manage the workspace's keys, apps, members, limits and usage (if you own it)",
        [Auth.Scopes.Admin] = "Operate this Lattice: catalog models, offers, prices and task classes (if you own the operator workspace)",
        ["offline_access"] = "Stay connected when you are not using it (refresh tokens)",
        ["openid"] = "Know who you are",
        ["profile"] = "See your name",
        ["email"] = "See your e-mail address",
    };

    public static string Encode(string? text) => WebUtility.HtmlEncode(text ?? "");

    public static IResult Html(string title, string body, int status = StatusCodes.Status200OK) =>
        Results.Content(Layout(title, body), "text/html; charset=utf-8", Encoding.UTF8, status);

    private static string Layout(string title, string body) => $$"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{Encode(title)}} · Lattice</title>
        <style>
        body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1f; }
        h1 { font-size: 1.4rem; }
        label { display: block; margin: .8rem 0 .2rem; }
        input[type=email], input[type=password], input[type=text], select { width: 100%; padding: .5rem; box-sizing: border-box; }
        fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; }
        fieldset label { display: flex; gap: .5rem; align-items: baseline; margin: .4rem 0; }
        code { font-size: .85em; color: #555; }
        button { padding: .5rem 1rem; margin: 1rem .5rem 0 0; }
        .error { color: #a00; }
        </style>
        </head>
        <body>
        <h1>{{Encode(title)}}</h1>
        {{body}}
        </body>
        </html>
        """;

    public static string Antiforgery(HttpContext context)
    {
        var tokens = context.RequestServices.GetRequiredService<IAntiforgery>().GetAndStoreTokens(context);
        return $"""<input type="hidden" name="{Encode(tokens.FormFieldName)}" value="{Encode(tokens.RequestToken)}">""";
    }

    public static IResult SignIn(HttpContext context, string returnUrl, string? email, string? error, int status = StatusCodes.Status200OK)
    {
        var body = new StringBuilder();
        if (error is not null)
        {
            body.Append($"""<p class="error" role="alert" id="error">{Encode(error)}</p>""");
        }
        body.Append($"""
            <form method="post" action="/account/login">
            {Antiforgery(context)}
            <input type="hidden" name="returnUrl" value="{Encode(returnUrl)}">
            <label for="email">E-mail</label>
            <input id="email" name="email" type="email" autocomplete="username" required value="{Encode(email)}">
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required>
            <button type="submit" id="sign-in">Sign in</button>
            </form>
            """);
        return Html("Sign in to Lattice", body.ToString(), status);
    }

    /// <summary>The consent form. <paramref name="hidden"/> are the fields that carry the original request.</summary>
    public static IResult Consent(
        HttpContext context, string action, string appName, string userEmail, IEnumerable<string> requestedScopes,
        IReadOnlyList<(string Id, string Name)> workspaces, IEnumerable<KeyValuePair<string, string>> hidden)
    {
        var body = new StringBuilder();
        body.Append($"""<p><strong id="app-name">{Encode(appName)}</strong> wants to use Lattice as <strong>{Encode(userEmail)}</strong>.</p>""");
        body.Append($"""<form method="post" action="{Encode(action)}">""");
        body.Append(Antiforgery(context));
        foreach (var (name, value) in hidden)
        {
            body.Append($"""<input type="hidden" name="{Encode(name)}" value="{Encode(value)}">""");
        }
        body.Append("<fieldset><legend>Allow it to:</legend>");
        foreach (var scope in requestedScopes)
        {
            var description = ScopeDescriptions.TryGetValue(scope, out var d) ? d : scope;
            body.Append($"""<label><input type="checkbox" name="granted_scope" value="{Encode(scope)}" checked> {Encode(description)} <code>{Encode(scope)}</code></label>""");
        }
        body.Append("</fieldset>");
        if (workspaces.Count > 1)
        {
            body.Append("""<label for="workspace">Workspace that pays</label><select id="workspace" name="workspace">""");
            foreach (var (id, name) in workspaces)
            {
                body.Append($"""<option value="{Encode(id)}">{Encode(name)}</option>""");
            }
            body.Append("</select>");
        }
        else if (workspaces.Count == 1)
        {
            body.Append($"""<input type="hidden" name="workspace" value="{Encode(workspaces[0].Id)}">""");
        }
        body.Append("""<button type="submit" name="decision" value="accept" id="allow">Allow</button>""");
        body.Append("""<button type="submit" name="decision" value="deny" id="deny">Deny</button>""");
        body.Append("</form>");
        return Html("Authorize " + appName, body.ToString());
    }

    public static IResult EnterUserCode(HttpContext context, string? error)
    {
        var body = new StringBuilder();
        if (error is not null)
        {
            body.Append($"""<p class="error" role="alert" id="error">{Encode(error)}</p>""");
        }
        body.Append("""
            <p>Enter the code your device shows.</p>
            <form method="get" action="/connect/verify">
            <label for="user_code">Code</label>
            <input id="user_code" name="user_code" type="text" autocomplete="off" required>
            <button type="submit" id="continue">Continue</button>
            </form>
            """);
        return Html("Connect a device", body.ToString(), error is null ? StatusCodes.Status200OK : StatusCodes.Status400BadRequest);
    }

    public static IResult Message(string title, string message, int status = StatusCodes.Status200OK) =>
        Html(title, $"""<p id="message">{Encode(message)}</p>""", status);
}

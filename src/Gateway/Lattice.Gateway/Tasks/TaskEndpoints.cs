using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Tasks;

/// <summary><c>POST /v1/tasks/{task}</c>: the generic surface every alias wraps.</summary>
public static class TaskEndpoints
{
    public static IEndpointRouteBuilder MapTasks(this IEndpointRouteBuilder routes, string prefix = "/v1")
    {
        var route = routes.MapPost(prefix + "/tasks/{task}", (HttpContext context, string task, TaskDispatcher dispatcher) =>
            dispatcher.DispatchAsync(context, task));
        if (prefix == "/v1")
        {
            // Described once: the /openai/v1 twin is the same operation.
            route.Describe("Tasks", "RunTask", "Run a task class (chat.completions, embeddings, audio.transcriptions, or one an operator defined) on a model")
                .Accepts<System.Text.Json.Nodes.JsonObject>("application/json", "multipart/form-data");
        }
        return routes;
    }

    public static IServiceCollection AddTasks(this IServiceCollection services)
    {
        services.AddSingleton<TaskDispatcher>();
        services.AddSingleton<RequestBodies>();
        services.AddSingleton<Dispatch.Dispatcher>();
        services.AddSingleton<Routing.Router>();
        return services;
    }
}
